"""What each trial state allows (trials/states.py), tested for every pair of write and state, and what a withdrawn
subject stops (issue 13: a closed trial's cases could be reopened, completed or excluded, its subjects withdrawn, its
sites changed; a withdrawn subject's cases reopened or completed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import transaction
from django.test import TestCase

from platform_core.errors import ApplicationError
from tests.support.factories import HospitalFactory, TrialWorld, enrol
from tests.support.storage import stored_names
from tests.support.uploads import attach_photograph, vf_csv
from trials.file_services import case_file_upload, case_file_withdraw
from trials.models import Subject, Trial, TrialSite, TrialStatus
from trials.query_services import data_query_answer, data_query_close, data_query_raise
from trials.services import (
    case_create,
    case_record_rnfl,
    case_set_status,
    subject_withdraw,
    trial_site_add,
    trial_site_update,
)
from trials.states import ALLOWED, STOPPED_BY_WITHDRAWAL

STATE_REFUSALS = {"trial_state", "trial_closed", "trial_not_recruiting"}


@contextmanager
def rolled_back() -> Iterator[None]:
    """Each pair in a world of its own: built, tried, then rolled back."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


class World(TrialWorld):
    """A recruiting trial with a subject, an open case with a file, and an open data query; its state is then set."""

    def __init__(self) -> None:
        super().__init__(modalities=("fundus", "visual_field", "oct"))
        self.file = attach_photograph(self.case1, actor=self.coord1)
        self.query = data_query_raise(actor=self.monitor, case=self.case1, text="Which eye is this?")
        self.answered = data_query_raise(actor=self.monitor, case=self.case1, text="Is the date right?")
        self.answered = data_query_answer(actor=self.coord1, query=self.answered, text="Yes.")

    def set_state(self, status: str) -> None:
        Trial.objects.filter(pk=self.trial.pk).update(status=status)
        self.trial.refresh_from_db()


def writes(w: World) -> dict[str, Callable[[], object]]:
    return {
        "site.add": lambda: trial_site_add(
            actor=w.manager, trial=w.trial, hospital=HospitalFactory(), enrolment_target=5
        ),
        "site.change": lambda: trial_site_update(
            actor=w.manager,
            site=TrialSite.objects.get(trial=w.trial, hospital=w.h1),
            reason="more",
            enrolment_target=12,
        ),
        "subject.enroll": lambda: enrol(coordinator=w.coord1, trial=w.trial, hospital=w.h1),
        "subject.withdraw": lambda: subject_withdraw(actor=w.coord1, subject=w.subject1, reason="moved away"),
        "case.create": lambda: case_create(actor=w.coord1, subject=w.subject1, laterality="OS", visit_day=30),
        "case.status": lambda: case_set_status(actor=w.coord1, case=w.case1, status="excluded", reason="ungradable"),
        "case.rnfl": lambda: case_record_rnfl(actor=w.coord1, case=w.case1, thickness_um=92.0),
        "case_file.upload": lambda: case_file_upload(actor=w.coord1, case=w.case1, data=vf_csv("OD")),
        "case_file.retire": lambda: case_file_withdraw(actor=w.coord1, case_file=w.file, reason="wrong eye"),
        "data_query.raise": lambda: data_query_raise(actor=w.monitor, case=w.case1, text="And the other eye?"),
        "data_query.answer": lambda: data_query_answer(actor=w.coord1, query=w.query, text="The right eye."),
        "data_query.close": lambda: data_query_close(actor=w.monitor, query=w.answered),
    }


class TrialStateTableTests(TestCase):
    def setUp(self):
        self.before = stored_names()

    def tearDown(self):
        for name in stored_names() - self.before:  # storage is not rolled back with the database
            default_storage.delete(name)

    def test_every_write_in_every_trial_state(self):
        self.assertEqual(set(writes(World.__new__(World))), set(ALLOWED))  # every write in the table is tried
        for status in TrialStatus.values:
            for action in ALLOWED:
                with self.subTest(state=status, write=action), rolled_back():
                    w = World()
                    w.set_state(status)
                    call = writes(w)[action]
                    if status in ALLOWED[action]:
                        try:
                            call()
                        except (ApplicationError, ValidationError) as exc:  # a state refusal is a failure here
                            self.assertNotIn(getattr(exc, "code", ""), STATE_REFUSALS | {"subject_withdrawn"}, exc)
                    else:
                        with self.assertRaises(ApplicationError) as caught:
                            call()
                        self.assertIn(caught.exception.code, STATE_REFUSALS)

    def test_a_withdrawn_subject_gets_no_new_case_file_measurement_or_case_change(self):
        for action in sorted(STOPPED_BY_WITHDRAWAL):
            with self.subTest(write=action), rolled_back():
                w = World()
                Subject.objects.filter(pk=w.subject1.pk).update(status="withdrawn")
                w.subject1.refresh_from_db()
                with self.assertRaises(ApplicationError) as caught:
                    writes(w)[action]()
                self.assertIn(caught.exception.code, {"subject_withdrawn", "already_withdrawn"})

    def test_the_refusal_says_what_and_why(self):
        w = World()
        w.set_state(TrialStatus.CLOSED)
        with self.assertRaises(ApplicationError) as caught:
            case_set_status(actor=w.coord1, case=w.case1, status="complete", reason="more images")
        self.assertEqual(caught.exception.code, "trial_state")
        self.assertIn(
            "is closed: it is not possible to complete, reopen or exclude cases now", caught.exception.message
        )
