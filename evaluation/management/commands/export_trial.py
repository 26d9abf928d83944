"""python manage.py export_trial --trial SLUG --out DIR: every export of a trial for statisticians, audited."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evaluation.services import trial_export_to_folder
from trials.models import Trial


class Command(BaseCommand):
    help = (
        "Write a trial's exports for statisticians into DIR: subjects, cases, reads, predictions, reference, the "
        "analysis CSVs of analyze_reads, the data dictionary and R and pandas loaders. Each export is audited."
    )

    def add_arguments(self, parser):
        parser.add_argument("--trial", required=True, help="the trial's slug")
        parser.add_argument("--out", required=True, help="folder to write into (created if missing)")

    def handle(self, *args, **options):
        trial = Trial.objects.filter(slug=options["trial"]).first()
        if trial is None:
            raise CommandError(f"No trial with slug {options['trial']!r}.")
        out = Path(options["out"])
        if out.exists() and not out.is_dir():
            raise CommandError(f"{out} exists and is not a folder.")
        for path in trial_export_to_folder(trial=trial, out=out):
            self.stdout.write(str(path))
