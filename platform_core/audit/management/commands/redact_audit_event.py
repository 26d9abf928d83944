from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from platform_core.accounts.models import User
from platform_core.audit.services import audit_redact


class Command(BaseCommand):
    help = (
        "Replace an audit event's payload (its changes, reason and description), where a secret landed, by a "
        "redaction marker. The chain still verifies (it covers the payload's digest, which stays); the redaction "
        "is itself recorded as an audit_event.redact event with the reason."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("seq", type=int, metavar="ID", help="the event's number (#ID in the trail)")
        parser.add_argument("--reason", required=True, help="why the payload is redacted (recorded)")
        parser.add_argument("--actor", metavar="EMAIL", help="the operator's Visus account, recorded as the actor")

    def handle(self, *args: object, **options: object) -> None:
        seq = int(str(options["seq"]))
        actor = None
        if options["actor"]:
            actor = User.objects.filter(email__iexact=str(options["actor"]).strip()).first()
            if actor is None:
                raise CommandError(f"No Visus account has the email {options['actor']}; nothing was redacted.")
        try:
            redaction = audit_redact(actor=actor, seq=seq, reason=str(options["reason"]))
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(
            self.style.SUCCESS(f"Audit event #{seq} redacted; the redaction is recorded as event #{redaction.seq}.")
        )
