from django.core.management.base import BaseCommand

from platform_core.demo import DEMO_PASSWORD, DEMO_TRIAL, seed_people, seed_trial


class Command(BaseCommand):
    help = "Create demo hospitals, people and data (idempotent) and print the demo logins."

    def handle(self, *args: object, **options: object) -> None:
        people = seed_people()
        seed_trial()
        self.stdout.write(self.style.SUCCESS(f"Demo data ready. Demo logins (password for all: {DEMO_PASSWORD}):"))
        for person in people:
            roles = ", ".join(f"{role.label} at {code}" for code, role in person.memberships)
            self.stdout.write(f"  {person.email:<34} {roles}")
        self.stdout.write(f"Demo trial: /trials/{DEMO_TRIAL['slug']}/ ({DEMO_TRIAL['protocol_number']})")
