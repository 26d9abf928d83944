"""Demo people and hospitals for a newcomer's laptop. Idempotent: running it twice changes nothing."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from platform_core.accounts.models import Hospital, Role, User
from platform_core.accounts.services import hospital_create, membership_grant, user_create

DEMO_PASSWORD = "visus-demo-2026"  # noqa: S105 - printed for the demo on purpose

HOSPITALS = [
    ("H01", "Northfield Eye Hospital", "GB"),
    ("H02", "Southbay University Eye Clinic", "GB"),
]


@dataclass(frozen=True)
class DemoPerson:
    email: str
    full_name: str
    memberships: tuple[tuple[str, Role], ...]
    is_staff: bool = False


PEOPLE = [
    DemoPerson(
        "manager@visus.example", "Maria Manager", (("H01", Role.TRIAL_MANAGER), ("H02", Role.TRIAL_MANAGER)), True
    ),
    DemoPerson("coordinator.h01@visus.example", "Chris Coordinator", (("H01", Role.COORDINATOR),)),
    DemoPerson("coordinator.h02@visus.example", "Dana Coordinator", (("H02", Role.COORDINATOR),)),
    DemoPerson("reader1@visus.example", "Dr Rhea Reader", (("H01", Role.READER),)),
    DemoPerson("reader2@visus.example", "Dr Ravi Reader", (("H01", Role.READER),)),
    DemoPerson("reader3@visus.example", "Dr Rosa Reader", (("H02", Role.READER),)),
    DemoPerson(
        "statistician@visus.example", "Sam Statistician", (("H01", Role.STATISTICIAN), ("H02", Role.STATISTICIAN))
    ),
    DemoPerson("monitor@visus.example", "Mo Monitor", (("H01", Role.MONITOR), ("H02", Role.MONITOR))),
]


@transaction.atomic
def seed_people() -> list[DemoPerson]:
    hospitals = {}
    for code, name, country in HOSPITALS:
        hospitals[code] = Hospital.objects.filter(code=code).first() or hospital_create(
            actor=None, code=code, name=name, country=country
        )
    for person in PEOPLE:
        user = User.objects.filter(email=person.email).first() or user_create(
            actor=None,
            email=person.email,
            full_name=person.full_name,
            password=DEMO_PASSWORD,
            is_staff=person.is_staff,
            is_superuser=person.is_staff,
        )
        for code, role in person.memberships:
            membership_grant(actor=None, user=user, hospital=hospitals[code], role=role)
    return PEOPLE
