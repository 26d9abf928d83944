from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from demo.seeding import DEMO_PASSWORD, DEMO_TRIAL, seed_models, seed_people, seed_trial


class Command(BaseCommand):
    help = (
        "Create demo hospitals, people, a trial with real files uploaded through the pipeline, and trained demo "
        "models (idempotent). Prints the demo logins."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--skip-models", action="store_true", help="do not train the demo networks")
        parser.add_argument("--epochs-scale", type=float, default=1.0, help="shorter training, e.g. 0.25")
        parser.add_argument("--synthetic", type=int, default=600, help="generated photographs for the DR model")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError(
                "seed_demo refuses to run in production: it creates demo accounts whose password is published in "
                "the README. Use it on a laptop or a test instance only."
            )
        people = seed_people()
        if not options["skip_models"]:
            seed_models(stdout=self.stdout, epochs_scale=options["epochs_scale"], synthetic=options["synthetic"])
        seed_trial()
        self.stdout.write(self.style.SUCCESS(f"Demo data ready. Demo logins (password for all: {DEMO_PASSWORD}):"))
        for person in people:
            roles = ", ".join(f"{role.label} at {code}" for code, role in person.memberships)
            self.stdout.write(f"  {person.email:<34} {roles}")
        self.stdout.write(f"Demo trial: /trials/{DEMO_TRIAL['slug']}/ ({DEMO_TRIAL['protocol_number']})")
