"""Subjects keep how many days before enrolment consent was given, not the calendar date (a HIPAA Safe Harbor
identifier that every trial-wide role could see). Existing subjects: computed from their enrolment date, then
the date column is dropped."""

from django.db import migrations, models


def forwards(apps, schema_editor) -> None:  # noqa: ANN001
    Subject = apps.get_model("trials", "Subject")  # noqa: N806
    for subject in Subject.objects.only("pk", "enrolled_at", "consent_date").iterator(chunk_size=1000):
        days = max(0, (subject.enrolled_at.date() - subject.consent_date).days)
        Subject.objects.filter(pk=subject.pk).update(consent_days_before_enrolment=days)


def backwards(apps, schema_editor) -> None:  # noqa: ANN001
    import datetime as dt

    Subject = apps.get_model("trials", "Subject")  # noqa: N806
    for subject in Subject.objects.only("pk", "enrolled_at", "consent_days_before_enrolment").iterator():
        date = subject.enrolled_at.date() - dt.timedelta(days=subject.consent_days_before_enrolment)
        Subject.objects.filter(pk=subject.pk).update(consent_date=date)


class Migration(migrations.Migration):
    dependencies = [("trials", "0008_gate_case_file_status_and_quality")]

    operations = [
        migrations.AddField(
            model_name="subject",
            name="consent_days_before_enrolment",
            field=models.PositiveIntegerField(null=True),
        ),
        migrations.AlterField(model_name="subject", name="consent_date", field=models.DateField(null=True)),
        migrations.RunPython(forwards, backwards),
        migrations.AlterField(
            model_name="subject",
            name="consent_days_before_enrolment",
            field=models.PositiveIntegerField(
                help_text="Days from consent to enrolment (0: the same day); the date itself is not stored."
            ),
        ),
        migrations.RemoveField(model_name="subject", name="consent_date"),
    ]
