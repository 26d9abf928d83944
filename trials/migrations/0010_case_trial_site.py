"""Each case carries its subject's trial and site (fixed at enrolment), filled here from the subject, with an index
on the two: the case list counts a role's visible cases from that index alone (bench_load)."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def backfill(apps, schema_editor):
    Case = apps.get_model("trials", "Case")
    Subject = apps.get_model("trials", "Subject")
    subject = Subject.objects.filter(pk=OuterRef("subject_id"))
    Case.objects.update(trial_id=Subquery(subject.values("trial_id")), site_id=Subquery(subject.values("site_id")))
    if schema_editor.connection.vendor == "postgresql":  # check the new keys now: the NOT NULL change follows
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):
    dependencies = [
        ("trials", "0009_consent_days_not_date"),
    ]

    operations = [
        migrations.AddField(
            model_name="case",
            name="trial",
            field=models.ForeignKey(
                db_index=False,
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="trials.trial",
            ),
        ),
        migrations.AddField(
            model_name="case",
            name="site",
            field=models.ForeignKey(
                db_index=False,
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="trials.trialsite",
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            model_name="case",
            name="trial",
            field=models.ForeignKey(
                db_index=False,
                editable=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="trials.trial",
            ),
        ),
        migrations.AlterField(
            model_name="case",
            name="site",
            field=models.ForeignKey(
                db_index=False,
                editable=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="trials.trialsite",
            ),
        ),
        migrations.AddIndex(
            model_name="case",
            index=models.Index(fields=["trial", "site"], name="case_trial_site"),
        ),
    ]
