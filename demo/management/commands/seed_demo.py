from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from demo.cross_validation import cross_validation_dispatch, unfinished
from demo.reader_study import seed_reader_study
from demo.seeding import (
    DEMO_CROSS_VALIDATION_FOLDS,
    DEMO_PASSWORD,
    DEMO_TRIAL,
    seed_models,
    seed_people,
    seed_trial,
)


class Command(BaseCommand):
    help = (
        "Create demo hospitals, people, a trial with real files uploaded through the pipeline, and trained demo "
        "models (idempotent). Prints the demo logins."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--skip-models", action="store_true", help="do not train the demo networks")
        parser.add_argument("--epochs-scale", type=float, default=1.0, help="shorter training, e.g. 0.25")
        parser.add_argument("--synthetic", type=int, default=600, help="generated photographs for the DR model")
        parser.add_argument(
            "--cross-validate",
            type=int,
            default=DEMO_CROSS_VALIDATION_FOLDS,
            metavar="K",
            help="K-fold cross-validation of each demo network over the shipped real data, by subject (0: none); "
            "the worker runs it after the server has started, and each card says so until its figures land",
        )
        parser.add_argument(
            "--cross-validate-here",
            action="store_true",
            help="run the cross-validation here, before registering the networks (K more trainings each: minutes)",
        )
        parser.add_argument(
            "--resume-running",
            action="store_true",
            help="send a cross-validation whose card says running again from fold 1, even with recent progress: "
            "only when no worker runs now (make run starts its only worker after seed_demo), as the embedded "
            "broker loses the message of a worker stopped mid-way",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError(
                "seed_demo refuses to run in production: it creates demo accounts whose password is published in "
                "the README. Use it on a laptop or a test instance only."
            )
        if options["cross_validate"] < 0 or options["cross_validate"] == 1:
            raise CommandError(f"--cross-validate takes 0 (none) or at least 2 folds, not {options['cross_validate']}.")
        people = seed_people()
        names: list[str] = []
        if not options["skip_models"]:
            names = seed_models(
                stdout=self.stdout,
                epochs_scale=options["epochs_scale"],
                synthetic=options["synthetic"],
                folds=options["cross_validate"],
                cross_validate_here=options["cross_validate_here"],
            )
        seed_trial()
        if seed_reader_study(password=DEMO_PASSWORD):
            self.stdout.write("Ran the demo reader study (three readers, unaided and AI-aided phases).")
        # After the trial's commit (as its completed cases send their inference jobs), so that the worker runs the
        # demo cases' predictions before the cross-validation's first folds.
        waiting = unfinished(names, resume_running=options["resume_running"])
        if waiting:
            transaction.on_commit(lambda: self._send_cross_validation(waiting))
        self.stdout.write(self.style.SUCCESS(f"Demo data ready. Demo logins (password for all: {DEMO_PASSWORD}):"))
        for person in people:
            roles = ", ".join(f"{role.label} at {code}" for code, role in person.memberships)
            self.stdout.write(f"  {person.email:<34} {roles}")
        self.stdout.write(f"Demo trial: /trials/{DEMO_TRIAL['slug']}/ ({DEMO_TRIAL['protocol_number']})")

    def _send_cross_validation(self, waiting: list) -> None:
        sent = cross_validation_dispatch(waiting)
        listed = ", ".join(model.name for model in waiting)
        if sent == len(waiting):
            self.stdout.write(
                f"Cross-validation of {listed} sent to the worker: their model cards say it is queued or running "
                "until its figures land (a few minutes; var/log/worker.log)."
            )
        else:
            self.stdout.write(
                self.style.WARNING(
                    f"The broker took the cross-validation of {sent} of {len(waiting)} demo networks ({listed}); the "
                    "others' cards stay queued until seed_demo runs again with the broker up."
                )
            )
