"""A trial in its reading period with three readers, an adjudicator and complete cases."""

from __future__ import annotations

from platform_core.accounts.models import Role
from reading import services
from reading.models import Phase
from tests.support.factories import TEST_PASSWORD, TrialWorld, enrol, member
from tests.support.uploads import attach_photograph
from trials.models import Trial
from trials.services import case_create, case_set_status, trial_transition

PASSWORD = TEST_PASSWORD
GOOD = {"icdr_grade": "0", "referable_dr": "no", "confidence": 80}
GOOD_CONF = {"icdr_grade": 90, "referable_dr": 85}


class ReadingWorld(TrialWorld):
    def __init__(
        self,
        *,
        aided: bool = False,
        crossing: str = "fully_crossed",
        k: int = 2,
        reading: bool = True,
        images: bool = False,
    ):
        super().__init__()
        self.reader2 = member(Role.READER, self.h2, email="reader2@visus.example")
        self.reader3 = member(Role.READER, self.h1, email="reader3@visus.example")
        self.adjudicator = member(Role.READER, self.h2, email="adjudicator@visus.example")
        self.cases = [self.case1, self.case2]
        self.files = {}
        if images:
            from tests.support import image_factories
            from trials.file_services import case_file_upload

            for case, coordinator in ((self.case1, self.coord1), (self.case2, self.coord2)):
                data = image_factories.plain_png(400, 300)
                self.files[case.pk] = case_file_upload(actor=coordinator, case=case, data=data).case_file
        for case, coordinator in ((self.case1, self.coord1), (self.case2, self.coord2)):
            if case.pk not in self.files:
                attach_photograph(case, coordinator)  # an empty case cannot be completed
            case_set_status(actor=coordinator, case=case, status="complete")
        self.setup = services.reading_setup_set(
            actor=self.manager,
            trial=self.trial,
            crossing=crossing,
            readers_per_case=k,
            aided_phase=aided,
            washout_days=28,
        )
        self.assignments = {}
        for reader, group in ((self.reader, "resident"), (self.reader2, "attending"), (self.reader3, "specialist")):
            for phase in self.setup.phases:
                self.assignments[(reader.pk, phase)] = services.reader_assign(
                    actor=self.manager, trial=self.trial, reader=reader, phase=phase, group=group
                )
        services.panel_member_add(actor=self.manager, trial=self.trial, user=self.adjudicator)
        if reading:
            self.start_reading()

    def delete_files(self) -> None:
        from django.core.files.storage import default_storage

        for f in self.files.values():
            for name in (f.content.name, f.preview.name, f.thumbnail.name):
                if name:
                    default_storage.delete(name)

    def start_reading(self) -> None:
        self.trial = trial_transition(actor=self.manager, trial=self.trial, status="reading")

    def add_cases(self, n: int, *, complete: bool = True) -> list:
        """Cases of a new subject at H01 (while recruiting: build with ``reading=False``, then start_reading)."""
        subject = enrol(coordinator=self.coord1, trial=self.trial, hospital=self.h1)
        made = []
        for day in range(n):
            case = case_create(actor=self.coord1, subject=subject, laterality="OD", visit_day=day + 1)
            if complete:
                attach_photograph(case, self.coord1)
                case = case_set_status(actor=self.coord1, case=case, status="complete")
            made.append(case)
        self.cases.extend(made)
        return made

    def signed_read(self, reader, answers=None, confidences=None, phase=Phase.UNAIDED):
        read = services.read_next(reader=reader, trial=self.trial, phase=phase)
        read = services.read_draft_save(
            reader=reader,
            read=read,
            version=read.version,
            answers=answers or GOOD,
            confidences=confidences or GOOD_CONF,
        )
        return services.read_sign(
            read=read, signer=reader, password=PASSWORD, meaning=services.MEANING_READ, version=read.version
        )


NO_DR = {"icdr_grade": "0", "referable_dr": "no", "confidence": 80}
MODERATE = {"icdr_grade": "2", "referable_dr": "yes", "confidence": 80}


def sign_every_case(w, reader, answers_by_case, phase="unaided"):
    """Sign the reader's reads of every case in their order, with the answers given for each case."""
    while (read := services.read_next(reader=reader, trial=w.trial, phase=phase)) is not None:
        read = services.read_draft_save(
            reader=reader,
            read=read,
            version=read.version,
            answers=answers_by_case[read.case_id],
            confidences=GOOD_CONF,
        )
        services.read_sign(read=read, signer=reader, password=PASSWORD, meaning=services.MEANING_READ, version=2)


def majority_world():
    """A reading world whose trial takes the readers' majority as its reference standard."""
    w = ReadingWorld()
    Trial.objects.filter(pk=w.trial.pk).update(reference_rule="majority")
    w.trial.refresh_from_db()
    return w
