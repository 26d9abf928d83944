from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from platform_core.audit.services import audit_anchor, audit_anchor_latest, audit_verify


class Command(BaseCommand):
    help = (
        "Recompute the audit trail's keyed hash chain against its head record and the newest signed anchor in "
        "object storage; exit 1 naming the first bad event if it was tampered with (edited, deleted, re-hashed, "
        "cut short or emptied). Prints the head (SEQ:HASH). --anchor then writes a new signed anchor."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--expect-head", metavar="SEQ:HASH", help="a head printed by an earlier run")
        parser.add_argument(
            "--allow-empty", action="store_true", help="a new installation that has recorded nothing yet"
        )
        parser.add_argument(
            "--anchor", action="store_true", help="after a good check, write the head as a signed anchor"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        expect = None
        if options["expect_head"]:
            seq, _, digest = str(options["expect_head"]).partition(":")
            if not seq.isdigit() or len(digest) != 64:
                raise CommandError("--expect-head takes SEQ:HASH as printed by an earlier run.")
            expect = (int(seq), digest.lower())
        scan = audit_anchor_latest()
        if scan.forged:
            raise CommandError(
                f"Audit trail anchors BROKEN: {', '.join(scan.forged)} fail their signature "
                "(forged, edited, or written with another VISUS_AUDIT_KEY)."
            )
        report = audit_verify(expect_head=expect, anchor=scan.latest, allow_empty=options["allow_empty"])
        if not report.ok:
            raise CommandError(f"Audit trail BROKEN after {report.checked} good event(s): {report.problem}.")
        redacted = f" ({report.redacted} redacted by a recorded redaction)" if report.redacted else ""
        against = f", against the anchor of {scan.latest.written_at} (#{scan.latest.seq})" if scan.latest else ""
        self.stdout.write(
            self.style.SUCCESS(f"Audit trail intact: {report.checked} event(s) verified{redacted}{against}.")
        )
        if report.head:
            self.stdout.write(f"Head: {report.head[0]}:{report.head[1]}")
        if options["anchor"] and report.head:
            try:
                anchor = audit_anchor()
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from exc
            self.stdout.write(f"Anchor written: {anchor.name}")
