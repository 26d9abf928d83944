from __future__ import annotations

import factory

from platform_core.accounts.models import Hospital, Membership, Role, User

TEST_PASSWORD = "correct-horse-battery-staple"


class HospitalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Hospital
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"T{n:02d}")
    name = factory.LazyAttribute(lambda o: f"Hospital {o.code}")
    country = "GB"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@visus.example")
    full_name = factory.Sequence(lambda n: f"Test User {n}")
    password = factory.PostGenerationMethodCall("set_password", TEST_PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    hospital = factory.SubFactory(HospitalFactory)
    role = Role.COORDINATOR


def member(role: Role, hospital: Hospital, **user_fields: object) -> User:
    user = UserFactory(**user_fields)
    MembershipFactory(user=user, hospital=hospital, role=role)
    return user


# --- Trials ---------------------------------------------------------------------------------------

INCLUSION = ["Age 18 or over", "Diabetes type 1 or 2"]
EXCLUSION = ["Previous vitreoretinal surgery"]
ELIGIBLE = {"Age 18 or over": True, "Diabetes type 1 or 2": True, "Previous vitreoretinal surgery": False}


def make_trial(*, manager: User, slug: str = "dr-trial", prefix: str = "DR01", hospitals=(), recruiting=True, **fields):
    """A trial created through the services (so it is audited like a real one)."""
    from trials.services import trial_create, trial_site_add, trial_transition

    defaults = {
        "protocol_number": f"P-{slug}",
        "title": f"Trial {slug}",
        "modalities": ["fundus"],
        "reading_form": ["icdr_grade", "referable_dr", "confidence"],
        "inclusion_criteria": INCLUSION,
        "exclusion_criteria": EXCLUSION,
    }
    defaults.update(fields)
    trial = trial_create(actor=manager, slug=slug, subject_prefix=prefix, **defaults)
    for hospital in hospitals:
        trial_site_add(actor=manager, trial=trial, hospital=hospital, enrolment_target=10)
    if recruiting:
        trial = trial_transition(actor=manager, trial=trial, status="recruiting")
    return trial


def enrol(*, coordinator: User, trial, hospital: Hospital, age: int = 60, token: str | None = None):
    import datetime as dt

    from trials.models import TrialSite
    from trials.services import subject_enroll

    return subject_enroll(
        actor=coordinator,
        site=TrialSite.objects.get(trial=trial, hospital=hospital),
        eligibility=ELIGIBLE,
        consent_date=dt.date(2026, 1, 5),
        consent_form_version="v1.0",
        sex="female",
        age=age,
        diabetes_type="type2",
        diabetes_duration_years=10,
        submission_token=token,
    )


class TrialWorld:
    """Two hospitals in one recruiting trial, with a manager, a coordinator per site, and people."""

    def __init__(self, modalities: tuple[str, ...] = ("fundus",)) -> None:
        self.h1 = HospitalFactory(code="H01")
        self.h2 = HospitalFactory(code="H02")
        self.manager = member(Role.TRIAL_MANAGER, self.h1, email="manager@visus.example")
        MembershipFactory(user=self.manager, hospital=self.h2, role=Role.TRIAL_MANAGER)
        self.coord1 = member(Role.COORDINATOR, self.h1, email="coord1@visus.example")
        self.coord2 = member(Role.COORDINATOR, self.h2, email="coord2@visus.example")
        self.reader = member(Role.READER, self.h1, email="reader@visus.example")
        self.monitor = member(Role.MONITOR, self.h1, email="monitor@visus.example")
        self.statistician = member(Role.STATISTICIAN, self.h2, email="stats@visus.example")
        self.outsider = member(Role.COORDINATOR, HospitalFactory(code="H09"), email="outsider@visus.example")
        self.trial = make_trial(manager=self.manager, hospitals=[self.h1, self.h2], modalities=list(modalities))
        self.subject1 = enrol(coordinator=self.coord1, trial=self.trial, hospital=self.h1)
        self.subject2 = enrol(coordinator=self.coord2, trial=self.trial, hospital=self.h2)
        from trials.services import case_create

        self.case1 = case_create(actor=self.coord1, subject=self.subject1, laterality="OD", visit_day=0)
        self.case2 = case_create(actor=self.coord2, subject=self.subject2, laterality="OS", visit_day=0)
