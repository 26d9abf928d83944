"""Demo people and hospitals for a newcomer's laptop. Idempotent: running it twice changes nothing."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

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
    DemoPerson("adjudicator@visus.example", "Dr Ada Adjudicator", (("H02", Role.READER),)),
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
            is_superuser=False,  # staff see their own hospitals and trials in the admin (see ScopedAdminMixin)
        )
        for code, role in person.memberships:
            membership_grant(actor=None, user=user, hospital=hospitals[code], role=role)
        if person.is_staff:
            user.groups.add(trial_manager_admin_group())
    return PEOPLE


def trial_manager_admin_group():
    """The trial managers' staff group, declared by the apps and created by every migrate (accounts.staff_groups)."""
    from django.contrib.auth.models import Group

    from platform_core.accounts.staff_groups import TRIAL_MANAGERS

    return Group.objects.get(name=TRIAL_MANAGERS)


DEMO_TRIAL = {
    "slug": "demo-dr",
    "protocol_number": "VISUS-DR-001",
    "title": "AI grading of diabetic retinopathy and glaucoma versus ophthalmologists (demo)",
    "subject_prefix": "DR01",
    "modalities": ["fundus", "visual_field"],
    "reading_form": ["icdr_grade", "referable_dr", "dme", "gradable", "confidence", "glaucoma"],
    "readers_per_case": 3,
    "reading_design": "unaided_then_aided",
    "washout_days": 28,
    "reference_rule": "majority",  # the demo reader study: majority of three readers, ties adjudicated
    "inclusion_criteria": ["Age 18 years or over", "Diabetes mellitus type 1 or 2", "Written informed consent"],
    "exclusion_criteria": ["Previous vitreoretinal surgery", "Media opacity preventing imaging"],
}

DEMO_SUBJECTS = [
    # site, sex, age, diabetes type, duration, [(eye, visit day, photo, visual field type)]
    ("H01", "female", 61, "type2", 12, [("OD", 0, "01_dr.jpg", "ctr"), ("OS", 0, "02_dr.jpg", "ctr")]),
    ("H01", "male", 47, "type1", 20, [("OD", 0, "03_dr.jpg", "ctr")]),
    ("H01", "male", 93, "type2", 25, [("OS", 0, "01_g.jpg", "pwg")]),
    ("H02", "female", 55, "type2", 8, [("OD", 0, "01_h.jpg", "ctr"), ("OS", 0, "02_g.jpg", "pwg")]),
    ("H02", "male", 70, "type2", 15, [("OD", 0, "02_h.jpg", "ctr"), ("OD", 180, "03_g.jpg", "pwg")]),
]
DEMO_DATA = Path(__file__).resolve().parent / "data"


def demo_visual_field_csv(kind: str, eye: str, index: int) -> bytes:
    """A real 24-2 field from the shipped visualFields data, in Visus's documented CSV format."""
    source = DEMO_DATA / "visual_fields" / ("vfctrSunyiu24d2.csv" if kind == "ctr" else "vfpwgRetest24d2.csv")
    from demo.crossval import DEMO_CASE_VF_PATIENTS  # patients the demo networks never train on

    with source.open(newline="") as handle:
        held_out = DEMO_CASE_VF_PATIENTS[source.stem]
        rows = [row for row in csv.DictReader(handle) if row["eye"] == eye and row["id"] in held_out]
    row = rows[(index * 7) % len(rows)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = [
        "eye",
        "age",
        *[f"s{i}" for i in range(1, 55)],
        "fixation_losses",
        "fixation_checks",
        "false_positives",
        "false_negatives",
    ]
    values = [
        row["eye"],
        row["age"],
        *[row[f"l{i}"] for i in range(1, 55)],
        str(round(float(row["fl"]) * 100)),
        "100",
        f"{float(row['fpr']) * 100:g}",
        f"{float(row['fnr']) * 100:g}",
    ]
    writer.writerow(header)
    writer.writerow(values)
    return out.getvalue().encode()


@transaction.atomic
def seed_trial() -> None:
    """The demo trial recruiting at H01 and H02, with a few enrolled subjects and their cases."""
    import datetime as dt

    from trials.models import Trial, TrialSite, TrialStatus
    from trials.services import case_create, subject_enroll, trial_create, trial_site_add, trial_transition

    manager = User.objects.get(email="manager@visus.example")
    trial = Trial.objects.filter(slug=DEMO_TRIAL["slug"]).first()
    if trial is None:
        trial = trial_create(actor=manager, **DEMO_TRIAL)
        for code, target in (("H01", 40), ("H02", 30)):
            trial_site_add(
                actor=manager, trial=trial, hospital=Hospital.objects.get(code=code), enrolment_target=target
            )
        trial = trial_transition(actor=manager, trial=trial, status=TrialStatus.RECRUITING)
    if trial.subjects.exists():
        return
    from trials.file_services import case_file_upload
    from trials.services import case_set_status

    eligibility = {c: True for c in trial.inclusion_criteria} | {c: False for c in trial.exclusion_criteria}
    for code, sex, age, diabetes, duration, cases in DEMO_SUBJECTS:
        coordinator = User.objects.get(email=f"coordinator.{code.lower()}@visus.example")
        subject = subject_enroll(
            actor=coordinator,
            site=TrialSite.objects.get(trial=trial, hospital__code=code),
            eligibility=eligibility,
            consent_date=dt.date.today() - dt.timedelta(days=3),  # noqa: DTZ011 - a calendar date, not a time
            consent_form_version="v2.1",
            sex=sex,
            age=age,
            diabetes_type=diabetes,
            diabetes_duration_years=duration,
        )
        for n, (eye, day, photo, vf_kind) in enumerate(cases):
            case = case_create(actor=coordinator, subject=subject, laterality=eye, visit_day=day)
            # Real files through the real pipeline: de-identified, stored, previews made.
            case_file_upload(actor=coordinator, case=case, data=(DEMO_DATA / "hrf" / photo).read_bytes(), source="demo")
            case_file_upload(
                actor=coordinator,
                case=case,
                data=demo_visual_field_csv(vf_kind, eye, subject.number + n),
                source="demo",
            )
            if day == 0:
                case_set_status(actor=coordinator, case=case, status="complete")


# K-fold cross-validation over all the shipped real data, by subject, that seed_demo asks for every demo card
# (`metrics_real_cross_validated`, with the folds and subjects counted): K more trainings per network, run by
# the worker after the server has started (demo/cross_validation.py), or here with `cross_validate_here`.
DEMO_CROSS_VALIDATION_FOLDS = 3


def seed_models(
    *,
    stdout,
    epochs_scale: float = 1.0,
    synthetic: int = 600,
    folds: int = DEMO_CROSS_VALIDATION_FOLDS,
    cross_validate_here: bool = False,
) -> list[str]:
    """Train and register the small demo networks (a couple of minutes on a laptop CPU) unless already there.

    One per training recipe; `synthetic` is the DR grader's generated photographs, which each recipe scales.
    With `folds` (0: none) each card also gets its `folds`-fold cross-validated figures over all the shipped
    real data, split by subject (demo/crossval.py): measured here before registering with
    `cross_validate_here`, else left to the worker (the card says "queued" until it lands; the caller sends
    the tasks with `demo.cross_validation.cross_validation_dispatch`). Returns the demo model names.
    """
    from diagnosis.models import ModelVersion
    from diagnosis.networks.inference import configure_threads
    from diagnosis.registry import model_register
    from diagnosis.training.recipes import RECIPES, demo_recipe

    configure_threads()
    names = []
    for recipe in RECIPES.values():
        name = recipe.demo_name
        names.append(name)
        if ModelVersion.objects.filter(name=name).exists():
            continue
        stdout.write(f"Training the demo model {name} (not for clinical use)...")
        train_demo = demo_recipe(recipe.architecture)
        trained = train_demo(
            synthetic=recipe.demo_synthetic(synthetic),
            epochs_scale=epochs_scale,
            cross_validation_folds=folds,
            cross_validation_later=not cross_validate_here,
        )
        card = trained.model_card
        model_register(
            actor=None,
            name=name,
            version="demo-1",
            weights=trained.weights,
            model_card=card,
            metrics=trained.metrics,
        )
        stdout.write(f"  {name}: validation {trained.metrics} in {trained.seconds:.0f} s")
        if folds and cross_validate_here:
            stdout.write(f"  {name}: {folds}-fold cross-validated {card['metrics_real_cross_validated']}")
    return names
