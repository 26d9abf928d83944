"""Audit actions of the model registry and inference jobs, and the fields their events record."""

from platform_core.audit.vocabulary import register_actions, register_auditable_fields

register_actions(
    "diagnosis",
    {
        "model.register": "a diagnostic network's weights were registered",
        "model.status": "a model version was activated or retired, with a reason",
        "model.card_update": "entries of a registered model card were set (old and new values), with a reason",
        "inference_job.queue": "a case was queued for a model",
        "inference_job.supersede": "a job stopped being current because the case's files changed",
        "inference_job.retry": "a failed or abandoned job was queued again",
        "inference_job.fail": "a job failed, with the reason",
        "inference_job.succeed": "a job wrote its prediction",
        "fusion.calibrate": "a trial's glaucoma fusion was calibrated on its reference standard (weights stored)",
    },
)

register_auditable_fields(
    "diagnosis.ModelVersion",
    ["name", "version", "architecture", "task", "sha256", "size", "status", "operating_threshold"],
)
register_auditable_fields("diagnosis.InferenceJob", ["case", "model_version", "status", "is_current"])
register_auditable_fields(
    "diagnosis.FusionCalibration", ["fundus_model", "vf_model", "eyes", "positives", "weights", "fitted_by.email"]
)
