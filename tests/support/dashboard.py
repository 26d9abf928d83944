"""A small fully crossed reader study with an AI-aided phase, two model versions and a calibration case, for the
trial analyses and their dashboard (evaluation.analysis)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from diagnosis.models import InferenceJob, ModelVersion, Prediction
from diagnosis.networks import zoom_in_net
from reading import services as reading_services
from reading.models import Read
from tests.support.reading import PASSWORD, ReadingWorld
from trials.services import reference_standard_record

# Reference ICDR grades of the ten analysable cases, and per reader (R01, R02, R03) the unaided referable answer
# with its confidence; aided answers are the unaided ones with the mistakes on cases 2 and 5 corrected.
GRADES = [0, 1, 0, 3, 2, 4, 0, 2, 1, 3]
UNAIDED = [
    [("no", 90), ("no", 60), ("yes", 30)],
    [("no", 70), ("yes", 20), ("no", 80)],
    [("yes", 40), ("no", 50), ("no", 90)],
    [("yes", 80), ("yes", 90), ("no", 40)],
    [("no", 20), ("yes", 60), ("yes", 70)],
    [("yes", 95), ("yes", 30), ("yes", 50)],
    [("no", 85), ("no", 75), ("no", 65)],
    [("yes", 60), ("no", 55), ("yes", 45)],
    [("no", 50), ("no", 90), ("yes", 35)],
    [("yes", 70), ("yes", 85), ("yes", 90)],
]
# Model scores (referable probability, grade) per case, for model versions 1 and 2.
MODEL_1 = [(0.10, 0), (0.30, 1), (0.55, 2), (0.80, 3), (0.45, 1), (0.95, 4), (0.05, 0), (0.70, 2), (0.20, 1), (0.90, 3)]
MODEL_2 = [(0.20, 0), (0.25, 1), (0.35, 0), (0.85, 3), (0.75, 2), (0.92, 4), (0.15, 0), (0.60, 2), (0.40, 2), (0.65, 2)]


def model_version(name: str, version: str) -> ModelVersion:
    """A registry entry without weights (the analyses read only its predictions)."""
    return ModelVersion.objects.create(
        name=name,
        version=version,
        architecture=zoom_in_net.ARCHITECTURE,
        task="dr_grading",
        config={},
        weights=f"models/{name}-{version}.pt",
        sha256="0" * 64,
        size=1,
    )


def predict(model: ModelVersion, case, probability: float, grade: int) -> Prediction:
    job = InferenceJob.objects.create(case=case, model_version=model, status="succeeded")
    return Prediction.objects.create(
        job=job, case=case, model_version=model, runtime_ms=1.0, referable_probability=probability, grade=grade
    )


def sign(world: ReadingWorld, reader, phase: str, answers_of) -> int:
    """The reader signs every case the trial serves them in ``phase``; ``answers_of(case)`` gives the answers and
    confidences. Returns how many were signed."""
    signed = 0
    while (read := reading_services.read_next(reader=reader, trial=world.trial, phase=phase)) is not None:
        answers, confidences = answers_of(read.case)
        read = reading_services.read_draft_save(
            reader=reader, read=read, version=read.version, answers=answers, confidences=confidences, seconds=30
        )
        reading_services.read_sign(
            read=read, signer=reader, password=PASSWORD, meaning=reading_services.MEANING_READ, version=read.version
        )
        signed += 1
    return signed


class DashboardStudy:
    """Three readers (resident, attending, specialist) read ten cases unaided, then AI-aided after the washout;
    one more case is a hidden calibration case (known grade 0, truly read as 0 by R01 only); two model versions
    predict every case. ``sign_aided=False`` leaves the aided phase unread."""

    def __init__(self, *, sign_aided: bool = True, lock: bool = True) -> None:
        w = self.w = ReadingWorld(aided=True, reading=False)
        w.add_cases(8)
        self.calibration = w.add_cases(1)[0]
        w.start_reading()
        reading_services.calibration_case_mark(
            actor=w.manager, case=self.calibration, known_answers={"icdr_grade": "0"}
        )
        self.cases = w.cases[:10]
        self.index = {case.pk: i for i, case in enumerate(self.cases)}
        for case, grade in zip(self.cases, GRADES, strict=True):
            reference_standard_record(actor=w.manager, case=case, source="imported", icdr_grade=grade)
        self.readers = [w.reader, w.reader2, w.reader3]
        for r, reader in enumerate(self.readers):
            sign(self.w, reader, "unaided", lambda case, r=r: self.answers(case, r, aided=False))
        Read.objects.filter(case__subject__trial=w.trial).update(signed_at=timezone.now() - timedelta(days=29))
        if sign_aided:
            for r, reader in enumerate(self.readers):
                sign(self.w, reader, "aided", lambda case, r=r: self.answers(case, r, aided=True))
        self.models = [model_version("dr-dash", "1"), model_version("dr-dash", "2")]
        for model, scores in zip(self.models, (MODEL_1, MODEL_2), strict=True):
            for case, (probability, grade) in zip(self.cases, scores, strict=True):
                predict(model, case, probability, grade)
        if lock:
            reading_services.reference_lock(
                actor=w.manager, trial=w.trial, password=PASSWORD, meaning=reading_services.MEANING_LOCK
            )

    def answer(self, case_number: int, reader: int, aided: bool) -> tuple[str, int]:
        answer, confidence = UNAIDED[case_number][reader]
        if aided and case_number in (2, 4):
            answer = "yes" if GRADES[case_number] >= 2 else "no"
        return answer, confidence

    def answers(self, case, reader: int, aided: bool) -> tuple[dict, dict]:
        if case.pk not in self.index:  # the calibration case: R01 answers grade 0 (agrees), the others grade 3
            grade = "0" if reader == 0 else "3"
            return {"icdr_grade": grade, "referable_dr": "no", "confidence": 50}, {"icdr_grade": 80, "referable_dr": 80}
        answer, confidence = self.answer(self.index[case.pk], reader, aided)
        grade = str(min(GRADES[self.index[case.pk]] + (reader == 2), 4)) if answer == "yes" else "0"
        return (
            {"icdr_grade": grade, "referable_dr": answer, "confidence": 50},
            {"icdr_grade": 70, "referable_dr": confidence},
        )
