"""Import a trial's reference standard from CSV: subject,eye,visit_day,icdr_grade,glaucoma.

    python manage.py import_reference --trial SLUG FILE.csv [--reason "..."]

Empty cells are allowed (a DR-only or glaucoma-only reference). Existing values are amended only with
--reason. Exit code 1 if any row failed; the rows that are fine are recorded. Refused, with nothing recorded,
once the trial's reference standard is locked (``trials.hooks.reference_locked``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from platform_core.errors import ApplicationError
from trials import hooks
from trials.models import Case, ReferenceSource, Trial
from trials.services import reference_standard_record

COLUMNS = ["subject", "eye", "visit_day", "icdr_grade", "glaucoma"]


class Command(BaseCommand):
    help = "Import reference-standard labels for a trial's cases from CSV."

    def add_arguments(self, parser) -> None:
        parser.add_argument("csv")
        parser.add_argument("--trial", required=True)
        parser.add_argument("--reason", default="", help="required to amend existing labels")

    def handle(self, *args: Any, **options: Any) -> None:
        trial = Trial.objects.filter(slug=options["trial"]).first()
        if trial is None:
            raise CommandError(f"No trial with slug {options['trial']!r}.")
        locked = hooks.reference_locked(trial)
        if locked:
            raise CommandError(f"Nothing imported: {locked}")
        try:
            text = Path(str(options["csv"])).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Could not read {options['csv']}: {exc}") from None
        reader = csv.DictReader(text.splitlines())
        if [c.strip().lower() for c in reader.fieldnames or []] != COLUMNS:
            raise CommandError(f"The CSV must have the columns {','.join(COLUMNS)}.")
        failed = recorded = 0
        for n, row in enumerate(reader, start=2):
            try:
                case = Case.objects.get(
                    subject__trial=trial,
                    subject__pseudonym=row["subject"].strip(),
                    laterality=row["eye"].strip().upper(),
                    visit_day=int(row["visit_day"]),
                )
                grade = row["icdr_grade"].strip()
                reference_standard_record(
                    actor=None,
                    case=case,
                    source=ReferenceSource.IMPORTED,
                    icdr_grade=int(grade) if grade else None,
                    glaucoma=row["glaucoma"].strip().lower(),
                    reason=str(options["reason"]),
                )
                recorded += 1
            except (Case.DoesNotExist, ValueError) as exc:
                failed += 1
                detail = "no such case in this trial" if isinstance(exc, Case.DoesNotExist) else "not a number"
                self.stdout.write(f"line {n}: REJECTED: {detail}")
            except (ValidationError, ApplicationError) as exc:
                failed += 1
                message = exc.message if isinstance(exc, ApplicationError) else " ".join(exc.messages)
                self.stdout.write(f"line {n}: REJECTED: {message}")
        self.stdout.write(f"{recorded} recorded, {failed} failed")
        if failed:
            raise CommandError(f"{failed} row(s) failed", returncode=1)
