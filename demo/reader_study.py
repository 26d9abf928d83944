"""The demo reader study: a small fully crossed two-phase study on the demo trial's complete cases.

Three readers in two experience groups (two residents, one specialist) read every case unaided, then AI-aided
after the washout; an adjudicator (not one of the readers) resolves the ties of the majority-of-readers
reference standard; one case is a hidden calibration case. Every step goes through the reading services, as a
person would, with the demo password as the e-signature.

Answers and confidences are drawn from a seeded generator around each case's truth (the HRF photograph's
category: diabetic retinopathy, glaucoma or healthy), so that the study has a realistic answer: readers better
than chance, the specialist better than the residents, and the AI-aided reads slightly better than the unaided.

The washout (28 days between a reader's signed unaided read and their aided read of the same case) is enforced
by ``reading.services.servable_cases`` and is not relaxed for the demo. Instead, once the unaided phase is
signed, ``_demo_washout`` moves the unaided reads' signing times back by the washout plus a day, through
``audited_save`` with its own audit action (``demo.reads_backdate``): the audit trail keeps the real signing
events and records that, and when, the demo moved them. Only seed_demo calls it, and seed_demo refuses to run
in production.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from django.db import transaction

from platform_core.accounts.models import User
from platform_core.audit.services import audit_snapshot, audited_save

READERS = [  # email, group, skill (how far a reader's judgement sits from chance, in logits)
    ("reader1@visus.example", "resident", 0.6),
    ("reader2@visus.example", "resident", 0.7),
    ("reader3@visus.example", "specialist", 1.0),
]
AIDED_GAIN = 0.3  # the AI-aided phase adds this much skill
ADJUDICATOR = "adjudicator@visus.example"
STUDY_SEED = 33  # fixed: the demo's reads are the same on every laptop (readers better than chance, aided better)
# The photograph decides the truth: HRF's diabetic retinopathy (grade), glaucoma and healthy categories.
TRUTH = {"dr": (3, "no"), "g": (0, "yes"), "h": (0, "no")}
CALIBRATION_PHOTO = "02_h.jpg"  # a healthy eye at H02: the one hidden calibration case


def demo_photos(trial: Any) -> dict[Any, str]:
    """{case id: the name of its shipped photograph}: the demo subjects were enrolled in the order of
    ``DEMO_SUBJECTS``, each case by eye and visit day (stored files keep no original name: de-identification)."""
    from demo.seeding import DEMO_SUBJECTS
    from trials.models import Case, Subject

    photos = {}
    subjects = Subject.objects.filter(trial=trial).select_related("site__hospital").order_by("created_at")
    for subject, (code, _sex, _age, _diabetes, _years, cases) in zip(subjects, DEMO_SUBJECTS, strict=False):
        if subject.site.hospital.code != code:
            continue  # not the demo's own subject (someone enrolled by hand): no truth for it
        for eye, day, photo, _vf in cases:
            case = Case.objects.filter(subject=subject, laterality=eye, visit_day=day).first()
            if case is not None:
                photos[case.pk] = photo
    return photos


def truth_of(photo: str) -> tuple[int, str]:
    """(ICDR grade, glaucoma) of a demo case, from the category in its photograph's name (``01_dr.jpg``)."""
    category = photo.rsplit("_", 1)[-1].split(".")[0]
    return TRUTH.get(category, TRUTH["h"])


def read_rng(email: str, photo: str, phase: str) -> random.Random:
    """The generator of one read: seeded by reader, case and phase, so that the study does not depend on the
    readers' (random) case orders and is the same on every laptop."""
    return random.Random(f"{STUDY_SEED}:{email}:{photo}:{phase}")  # noqa: S311 - demo answers, not security


def _judgement(rng: random.Random, diseased: bool, skill: float) -> tuple[str, int]:
    """A reader's yes/no and its 0-100 confidence: a latent score around +skill (diseased) or -skill."""
    score = rng.gauss(skill if diseased else -skill, 1.0)
    answer = "yes" if score > 0 else "no"
    confidence = max(50, min(100, round(50 + 50 * (1 - 2.718281828 ** -abs(score)))))
    return answer, confidence


def draw_read(rng: random.Random, truth: tuple[int, str], skill: float) -> tuple[dict[str, Any], dict[str, int]]:
    """Answers and confidences of one read of a case with this truth, for the demo trial's reading form."""
    grade, glaucoma = truth
    referable, c_ref = _judgement(rng, grade >= 2, skill)
    if referable == "yes":
        drawn = grade + rng.choice((-1, 0, 0, 1)) if grade >= 2 else rng.choice((2, 2, 3))
        read_grade = min(4, max(2, drawn))
    else:
        read_grade = 0 if grade < 2 or rng.random() < 0.5 else 1
    has_glaucoma, c_gl = _judgement(rng, glaucoma == "yes", skill)
    dme = "yes" if referable == "yes" and rng.random() < 0.4 else "no"
    answers = {
        "icdr_grade": str(read_grade),
        "referable_dr": referable,
        "dme": dme,
        "gradable": "yes",
        "confidence": round((c_ref + c_gl) / 2),
        "glaucoma": has_glaucoma,
    }
    confidences = {
        "icdr_grade": max(50, c_ref - 10),
        "referable_dr": c_ref,
        "dme": rng.randint(55, 85),
        "gradable": rng.randint(85, 100),
        "glaucoma": c_gl,
    }
    return answers, confidences


def _read_phase(trial: Any, reader: User, phase: str, skill: float, password: str, photos: dict[Any, str]) -> None:
    from reading import services

    while (read := services.read_next(reader=reader, trial=trial, phase=phase)) is not None:
        photo = photos.get(read.case_id, "unknown_h.jpg")
        rng = read_rng(reader.email, photo, phase)
        answers, confidences = draw_read(rng, truth_of(photo), skill)
        read = services.read_draft_save(
            reader=reader,
            read=read,
            version=read.version,
            answers=answers,
            confidences=confidences,
            seconds=rng.randint(25, 140),
        )
        services.read_sign(
            read=read, signer=reader, password=password, meaning=services.MEANING_READ, version=read.version
        )


@transaction.atomic
def _demo_washout(trial: Any, days: int) -> None:
    """Date the demo's signed unaided reads ``days`` earlier (demo only; audited as ``demo.reads_backdate``)."""
    from reading.models import Phase, Read, ReadStatus

    for read in Read.objects.filter(case__subject__trial=trial, phase=Phase.UNAIDED, status=ReadStatus.SIGNED):
        before = audit_snapshot(read)
        read.signed_at = read.signed_at - timedelta(days=days) if read.signed_at else None
        audited_save(
            read,
            actor=None,
            action="demo.reads_backdate",
            before=before,
            update_fields=["signed_at"],
            trial_ref=trial.slug,
            reason=f"demo timeline: the unaided read is dated {days} days earlier, after the washout",
        )


@transaction.atomic
def seed_reader_study(*, password: str) -> bool:
    """Run the demo reader study once (idempotent: nothing happens when the demo trial has a reading set-up).
    Returns whether it ran."""
    from demo.seeding import DEMO_TRIAL
    from reading import services
    from reading.models import Adjudication, AdjudicationStatus, Phase, ReadingSetup
    from trials.models import Case, Trial, TrialStatus
    from trials.services import trial_transition

    trial = Trial.objects.get(slug=DEMO_TRIAL["slug"])
    if ReadingSetup.objects.filter(trial=trial).exists():
        return False
    manager = User.objects.get(email="manager@visus.example")
    if trial.status == TrialStatus.RECRUITING:
        trial = trial_transition(actor=manager, trial=trial, status=TrialStatus.READING)
    setup = services.reading_setup_set(
        actor=manager, trial=trial, crossing="fully_crossed", aided_phase=True, washout_days=28
    )
    readers = [(User.objects.get(email=email), group, skill) for email, group, skill in READERS]
    for reader, group, _ in readers:
        for phase in setup.phases:
            services.reader_assign(actor=manager, trial=trial, reader=reader, phase=phase, group=group)
    adjudicator = User.objects.get(email=ADJUDICATOR)
    services.panel_member_add(actor=manager, trial=trial, user=adjudicator)
    photos = demo_photos(trial)
    calibration = next((pk for pk, photo in photos.items() if photo == CALIBRATION_PHOTO), None)
    if calibration is not None:
        grade, glaucoma = truth_of(CALIBRATION_PHOTO)
        services.calibration_case_mark(
            actor=manager,
            case=Case.objects.get(pk=calibration),
            known_answers={"icdr_grade": str(grade), "referable_dr": "no", "glaucoma": glaucoma},
        )
    for reader, _, skill in readers:
        _read_phase(trial, reader, Phase.UNAIDED, skill, password, photos)
    _demo_washout(trial, setup.washout_days + 1)
    for reader, _, skill in readers:
        _read_phase(trial, reader, Phase.AIDED, skill + AIDED_GAIN, password, photos)
    for adjudication in Adjudication.objects.filter(trial=trial, status=AdjudicationStatus.OPEN):
        grade, glaucoma = truth_of(photos.get(adjudication.case_id, "unknown_h.jpg"))
        services.adjudication_sign(
            adjudication=adjudication,
            signer=adjudicator,
            password=password,
            meaning=services.MEANING_ADJUDICATE,
            answers={"icdr_grade": str(grade), "glaucoma": glaucoma},
            version=adjudication.version,
        )
    return True
