"""python manage.py analyze_reads CSV [--json] [--threshold T]: MRMC figures of a long reads CSV.

A thin wrapper: parsing, validation and every figure live in the pure ``evaluation.stats`` package.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from evaluation.stats.reads import ReadsCsvError, parse_reads_csv
from evaluation.stats.report import analyze, format_report


class Command(BaseCommand):
    help = (
        "Analyse a reader study from a long CSV reader,modality,case,truth,rating: per-reader and per-modality AUC, "
        "OR-MRMC with Hillis ddf and, with --threshold, sensitivity/specificity per modality. Exit 1 on a bad CSV."
    )

    def add_arguments(self, parser):
        parser.add_argument("csv", help="path of the reads CSV (UTF-8)")
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
        parser.add_argument("--threshold", type=float, help="rating >= THRESHOLD counts as positive")
        parser.add_argument(
            "--effect",
            type=float,
            help="an AUC difference to plan for: prints this design's power and the cases or readers for 80%%",
        )

    def handle(self, *args, **options):
        try:
            with open(options["csv"], encoding="utf-8-sig", newline="") as handle:
                table = parse_reads_csv(handle)
        except FileNotFoundError:
            raise CommandError(f"{options['csv']}: no such file") from None
        except UnicodeDecodeError:
            raise CommandError(f"{options['csv']}: not a UTF-8 text file") from None
        except ReadsCsvError as error:
            raise CommandError(f"{options['csv']}: {error}") from None
        try:
            report = analyze(table, threshold=options["threshold"], effect=options["effect"])
        except ValueError as error:
            raise CommandError(f"{options['csv']}: {error}") from None
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2, allow_nan=False))
        else:
            self.stdout.write(format_report(report), ending="")
