"""Model registry, inference jobs and predictions."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from diagnosis.networks.specs import NETWORKS, NetworkSpec, network_spec
from platform_core.models import BaseModel
from trials.models import Case, CaseFile

# Choices come from the network specs (diagnosis/networks/specs.py), the one description per architecture.
Architecture = models.TextChoices(  # type: ignore[call-overload]  # django-stubs types only the class syntax
    "Architecture", [(spec.architecture.upper(), (spec.architecture, spec.label)) for spec in NETWORKS.values()]
)
Task = models.TextChoices(  # type: ignore[call-overload]  # django-stubs types only the class syntax
    "Task", [(spec.task.upper(), (spec.task, spec.task_label)) for spec in NETWORKS.values()]
)


# The operating point a model version gets when its card states none: an even call on the network's own
# probability. A trial should state the one it validated (model_card["operating_threshold"] at registration).
DEFAULT_OPERATING_THRESHOLD = 0.5


class ModelStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    RETIRED = "retired", "Retired"


class ModelVersion(BaseModel):
    """A diagnostic network in the registry. Weights live in storage; their SHA-256 is checked on every load."""

    name = models.CharField(max_length=100)
    version = models.CharField(max_length=40)
    architecture = models.CharField(max_length=20, choices=Architecture.choices)
    task = models.CharField(max_length=20, choices=Task.choices)
    config = models.JSONField(help_text="Architecture configuration (to_dict of the network's config).")
    input_spec = models.JSONField(default=dict, help_text="What the network reads: modality, sizes, normalisation.")
    weights = models.FileField(max_length=200)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    model_card = models.JSONField(
        default=dict, help_text="Intended use, training data, metrics, limitations, not_for_clinical_use."
    )
    metrics = models.JSONField(default=dict, blank=True)
    operating_threshold = models.FloatField(
        default=DEFAULT_OPERATING_THRESHOLD,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="The model's stated operating point: a probability at or above it is called positive (referable "
        "DR for a DR grader, glaucoma suspected for a glaucoma net). 0.5 when the card states none.",
    )
    status = models.CharField(max_length=10, choices=ModelStatus.choices, default=ModelStatus.ACTIVE)
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["name", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="unique_model_version")]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"

    @property
    def not_for_clinical_use(self) -> bool:
        return bool(self.model_card.get("not_for_clinical_use", True))

    @property
    def spec(self) -> NetworkSpec:
        """Everything the platform knows about this model's architecture (how it predicts, what it shows)."""
        return network_spec(self.architecture)

    @property
    def modality(self) -> str:
        return self.spec.modality


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


# How many times a job is claimed (``InferenceJob.attempts``) before it fails, counted on the job whatever message
# claims it: a task's retries, a message the re-dispatch sends again (whose Celery retry count starts at 0) and the
# redelivery after a worker died all count. Completing the case again queues a failed job with a fresh count.
INFERENCE_MAX_ATTEMPTS = 4


class InferenceJob(BaseModel):
    """One run of one model version on one case's files. Unique per (case, model, files): a redelivered
    task finds it done. New files give a new job; the earlier one stays, no longer current."""

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="inference_jobs")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="jobs")
    input_digest = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 over the de-identified files of the model's modality."
    )
    is_current = models.BooleanField(default=True, help_text="False once the case's files changed after it.")
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent.")
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)  # claims since queued: it fails at INFERENCE_MAX_ATTEMPTS
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    # The task message that holds the job while it runs, and until when (a dead worker's claim expires). On a queued
    # job: no claim before then (a batch-mate put back after a transient error waits for its delayed message).
    claimed_by = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    # The outbox mark: when its task message was last handed to the broker. Empty while the job waits for a first
    # message (the broker could not be reached after the commit): inference_redispatch sends it then.
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["case", "model_version", "input_digest"], name="unique_job_per_input"),
            models.UniqueConstraint(
                fields=["case", "model_version"],
                condition=models.Q(is_current=True),
                name="one_current_job_per_case_model",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_version} on {self.case_id}: {self.status}"


class ResultKind(models.TextChoices):
    PREDICTION = "prediction", "Prediction"
    UNRELIABLE_FIELD = "unreliable_field", "Unreliable visual field (no probability)"


class Prediction(BaseModel):
    """One model's output on one file of a case: a job reads every photograph of the case (or its visual
    field) and writes one prediction per file; the case-level result combines them (diagnosis/results.py)."""

    job = models.ForeignKey(InferenceJob, on_delete=models.PROTECT, related_name="predictions")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="predictions")
    case_file = models.ForeignKey(
        CaseFile,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="predictions",
        help_text="The file this prediction read (empty for predictions made before files were recorded).",
    )
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    kind = models.CharField(max_length=20, choices=ResultKind.choices, default=ResultKind.PREDICTION)
    class_probabilities = models.JSONField(default=list, blank=True, help_text="ICDR grades 0-4.")
    grade = models.PositiveSmallIntegerField(null=True, blank=True)
    referable_probability = models.FloatField(null=True, blank=True)
    glaucoma_probability = models.FloatField(null=True, blank=True)
    attention_overlay = models.FileField(max_length=200, blank=True)
    crop_boxes = models.JSONField(default=list, blank=True, help_text="[[x0, y0, x1, y1], ...] in image pixels.")
    details = models.JSONField(default=dict, blank=True)
    runtime_ms = models.FloatField()

    class Meta:
        ordering = ["created_at"]
        constraints = [models.UniqueConstraint(fields=["job", "case_file"], name="one_prediction_per_job_file")]

    def __str__(self) -> str:
        return f"{self.model_version} on {self.case_id}"


class FusionCalibration(BaseModel):
    """Fusion weights fitted on a trial's reference standard for the model versions it fused (Platt scaling
    per modality, then the weights and prior; diagnosis/networks/fusion.py). The newest one that matches a
    case's models is used on its page; older ones stay in the record."""

    trial = models.ForeignKey("trials.Trial", on_delete=models.PROTECT, related_name="fusion_calibrations")
    fundus_model = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    vf_model = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    weights = models.JSONField(help_text="FusionWeights.to_dict() of the fitted weights.")
    eyes = models.PositiveIntegerField(help_text="Eyes with a yes/no glaucoma reference standard it was fitted on.")
    positives = models.PositiveIntegerField(help_text="Of them, glaucomatous.")
    report = models.JSONField(default=dict, help_text="Per modality: eyes, positives, Platt slope/intercept.")
    fitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"fusion calibration of {self.trial} ({self.eyes} eyes)"

    @property
    def prevalence(self) -> float:
        return self.positives / self.eyes if self.eyes else 0.0
