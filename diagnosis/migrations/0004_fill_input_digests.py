"""Jobs created before input digests existed get the digest of their case's present files, so completing such a
case again does not rerun every model on unchanged files (as if the files had changed)."""

import hashlib

from django.db import migrations

TASK_MODALITY = {"dr_grading": "fundus", "glaucoma_vf": "visual_field", "glaucoma_fundus": "fundus"}


def fill(apps, schema_editor):  # noqa: ANN001
    job_model = apps.get_model("diagnosis", "InferenceJob")
    case_file_model = apps.get_model("trials", "CaseFile")
    for job in job_model.objects.filter(input_digest="").select_related("model_version"):
        modality = TASK_MODALITY.get(job.model_version.task)
        hashes = sorted(
            case_file_model.objects.filter(case_id=job.case_id, modality=modality, status="accepted").values_list(
                "sha256", flat=True
            )
        )
        if hashes:
            job.input_digest = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
            job.save(update_fields=["input_digest"])


class Migration(migrations.Migration):
    dependencies = [("diagnosis", "0003_job_inputs"), ("trials", "0005_submission_token_per_site")]
    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
