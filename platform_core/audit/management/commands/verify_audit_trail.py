from typing import Any

from django.core.management.base import BaseCommand, CommandError

from platform_core.audit.services import audit_verify


class Command(BaseCommand):
    help = (
        "Recompute the audit trail's hash chain; exit 1 naming the first bad event if it was tampered with. "
        "Prints the head (SEQ:HASH) to keep outside the database; give it back with --expect-head next time so "
        "that deleting the last events is caught too."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--expect-head", metavar="SEQ:HASH", help="a head printed by an earlier run")

    def handle(self, *args: Any, **options: Any) -> None:
        expect = None
        if options["expect_head"]:
            seq, _, digest = str(options["expect_head"]).partition(":")
            if not seq.isdigit() or len(digest) != 64:
                raise CommandError("--expect-head takes SEQ:HASH as printed by an earlier run.")
            expect = (int(seq), digest.lower())
        report = audit_verify(expect_head=expect)
        if not report.ok:
            raise CommandError(f"Audit trail BROKEN after {report.checked} good event(s): {report.problem}.")
        redacted = f" ({report.redacted} redacted by a recorded redaction)" if report.redacted else ""
        self.stdout.write(self.style.SUCCESS(f"Audit trail intact: {report.checked} event(s) verified{redacted}."))
        if report.head:
            self.stdout.write(f"Head: {report.head[0]}:{report.head[1]}")
