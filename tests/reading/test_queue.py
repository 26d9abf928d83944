"""The readers' stored queues (reading.queue): next case walks them in the order it always used (the case id hashed
with the assignment's seed), offers a case that becomes servable later in its place, never serves one that stopped
being servable, keeps both phases working, and costs the same number of queries whatever the trial's size."""

from __future__ import annotations

import hashlib
import importlib
import re
import uuid
from datetime import timedelta

from django.db import connection, transaction
from django.test import TestCase, TransactionTestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from platform_core.accounts.models import Role
from reading import queue, services
from reading.models import Phase, QueuedCase, Read, ReaderAssignment
from reading.queue import ReaderOrder, sqlite_reader_rank
from tests.support import require_postgresql
from tests.support.factories import member
from tests.support.races import interleaved, while_held
from tests.support.reading import GOOD, GOOD_CONF, PASSWORD, ReadingWorld
from tests.support.uploads import attach_photograph
from trials.models import Case
from trials.services import case_create, case_set_status, subject_withdraw


def hash_order(case_ids, seed) -> list:
    """Today's order, computed from scratch: every given case hashed with the seed."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM trials_case WHERE id = ANY(%s) ORDER BY uuid_hash_extended(id, %s)", [case_ids, seed]
        )
        return [row[0] for row in cursor.fetchall()]


class QueueOrderTests(TestCase):
    def setUp(self):
        self.w = ReadingWorld(reading=False)
        self.w.add_cases(10)
        self.late = self.w.add_cases(6, complete=False)  # open while reading starts
        self.w.start_reading()
        self.a = self.w.assignments[(self.w.reader.pk, Phase.UNAIDED)]

    def served(self):
        return list(services.servable_cases(assignment=self.a, setup=self.w.setup).values_list("pk", flat=True))

    def complete_ids(self):
        return list(Case.objects.filter(trial=self.w.trial, status="complete").values_list("pk", flat=True))

    def test_the_queue_holds_the_complete_cases_at_their_hash(self):
        ranks = dict(QueuedCase.objects.filter(assignment=self.a).values_list("case_id", "rank"))
        self.assertEqual(set(ranks), set(self.complete_ids()))
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, uuid_hash_extended(id, %s) FROM trials_case WHERE id = ANY(%s)", [self.a.seed, list(ranks)]
            )
            self.assertEqual(dict(cursor.fetchall()), ranks)

    def test_a_case_completed_later_is_offered_in_its_place(self):
        for case in self.late:
            attach_photograph(case, self.w.coord1)
            case_set_status(actor=self.w.coord1, case=case, status="complete")
        self.assertEqual(self.served(), hash_order(self.complete_ids(), self.a.seed))
        self.assertEqual(len(self.served()), 18)  # the world's two cases, ten, and the six completed late
        # ...and next case serves them in that order, one after the other.
        expected = self.served()
        for n in range(4):
            read = self.w.signed_read(self.w.reader)
            self.assertEqual(read.case_id, expected[n])

    def test_a_case_created_and_completed_during_reading_is_queued_for_every_unaided_reader(self):
        subject = self.w.subject1
        case = case_create(actor=self.w.coord1, subject=subject, laterality="OS", visit_day=30)
        self.assertFalse(QueuedCase.objects.filter(case=case).exists())  # open: not queued yet
        attach_photograph(case, self.w.coord1)
        case_set_status(actor=self.w.coord1, case=case, status="complete")
        readers = set(QueuedCase.objects.filter(case=case).values_list("assignment__reader_id", flat=True))
        self.assertEqual(readers, {self.w.reader.pk, self.w.reader2.pk, self.w.reader3.pk})

    def test_a_case_that_stops_being_servable_is_never_served_and_comes_back_in_its_place(self):
        first = self.served()[0]
        case = Case.objects.get(pk=first)
        coordinator = self.w.coord1 if case.site.hospital == self.w.h1 else self.w.coord2
        case_set_status(actor=coordinator, case=case, status="open", reason="another photograph")
        self.assertNotIn(first, self.served())
        read = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        self.assertNotEqual(read.case_id, first)
        case_set_status(actor=coordinator, case=case, status="complete")  # back: first in the order again
        self.assertEqual(self.served()[0], first)
        excluded = self.served()[1]
        excluded_case = Case.objects.get(pk=excluded)
        case_set_status(
            actor=self.w.coord1 if excluded_case.site.hospital == self.w.h1 else self.w.coord2,
            case=excluded_case,
            status="excluded",
            reason="ungradable",
        )
        subject_withdraw(actor=self.w.coord2, subject=self.w.subject2, reason="consent withdrawn")
        served = self.served()
        self.assertNotIn(excluded, served)
        self.assertNotIn(self.w.case2.pk, served)
        self.assertEqual(served, [c for c in hash_order(self.complete_ids(), self.a.seed) if c in set(served)])

    def test_an_opened_case_leaves_the_queue_and_a_reset_read_gives_it_back(self):
        read = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        self.assertFalse(QueuedCase.objects.filter(assignment=self.a, case_id=read.case_id).exists())
        self.assertNotIn(read.case_id, self.served())
        services.read_reset(actor=self.w.manager, read=read, reason="wrong eye opened")
        self.assertEqual(self.served()[0], read.case_id)
        again = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        self.assertEqual(again.case_id, read.case_id)

    def test_a_reader_assigned_late_gets_every_complete_case_not_yet_opened(self):
        late = member(Role.READER, self.w.h1, email="late@visus.example")
        a = services.reader_assign(
            actor=self.w.manager, trial=self.w.trial, reader=late, phase="unaided", group="resident"
        )
        queued = set(QueuedCase.objects.filter(assignment=a).values_list("case_id", flat=True))
        self.assertEqual(queued, set(self.complete_ids()))

    def test_the_order_is_a_bigint(self):
        rank = Case.objects.annotate(rank=ReaderOrder("id", self.a.seed)).values_list("rank", flat=True).first()
        self.assertIsInstance(rank, int)


class KPerCaseQueueTests(TestCase):
    def test_a_case_opened_by_k_readers_leaves_every_queue_and_a_reset_gives_it_back(self):
        w = ReadingWorld(crossing="k_per_case", k=1)
        read = services.read_next(reader=w.reader, trial=w.trial, phase="unaided")
        self.assertFalse(QueuedCase.objects.filter(case_id=read.case_id).exists())
        other = services.read_next(reader=w.reader2, trial=w.trial, phase="unaided")
        self.assertNotEqual(other.case_id, read.case_id)
        services.read_reset(actor=w.manager, read=read, reason="opened by mistake")
        readers = set(QueuedCase.objects.filter(case_id=read.case_id).values_list("assignment__reader_id", flat=True))
        self.assertEqual(readers, {w.reader.pk, w.reader2.pk, w.reader3.pk})
        again = services.read_next(reader=w.reader3, trial=w.trial, phase="unaided")
        self.assertEqual(again.case_id, read.case_id)

    def test_a_reader_assigned_late_is_not_queued_the_cases_k_readers_opened(self):
        w = ReadingWorld(crossing="k_per_case", k=1)
        read = services.read_next(reader=w.reader, trial=w.trial, phase="unaided")
        late = member(Role.READER, w.h1, email="late@visus.example")
        a = services.reader_assign(actor=w.manager, trial=w.trial, reader=late, phase="unaided", group="resident")
        queued = set(QueuedCase.objects.filter(assignment=a).values_list("case_id", flat=True))
        self.assertEqual(queued, {c.pk for c in w.cases} - {read.case_id})

    def test_a_calibration_case_stays_in_every_queue(self):
        w = ReadingWorld(crossing="k_per_case", k=1, reading=False)
        services.calibration_case_mark(actor=w.manager, case=w.case1, known_answers={"icdr_grade": "0"})
        w.start_reading()
        opened = set()
        while True:
            read = services.read_next(reader=w.reader, trial=w.trial, phase="unaided")
            if read is None or read.case_id == w.case1.pk:
                break
            opened.add(read.case_id)
            Read.objects.filter(pk=read.pk).update(status="signed", signed_at=timezone.now(), signature_name="R")
        self.assertEqual(read.case_id, w.case1.pk)
        self.assertEqual(QueuedCase.objects.filter(case=w.case1).count(), 2)  # the two other readers still get it


class AidedQueueTests(TestCase):
    def test_a_signed_unaided_read_queues_its_case_for_the_aided_phase_served_after_the_washout(self):
        w = ReadingWorld(aided=True, reading=False)
        w.add_cases(4)
        w.start_reading()
        aided = w.assignments[(w.reader.pk, Phase.AIDED)]
        self.assertFalse(QueuedCase.objects.filter(assignment=aided).exists())
        signed = [w.signed_read(w.reader) for _ in range(3)]
        self.assertEqual(
            set(QueuedCase.objects.filter(assignment=aided).values_list("case_id", flat=True)),
            {r.case_id for r in signed},
        )
        self.assertIsNone(services.read_next(reader=w.reader, trial=w.trial, phase="aided"))  # washout
        Read.objects.filter(pk__in=[r.pk for r in signed]).update(signed_at=timezone.now() - timedelta(days=29))
        ids = [r.case_id for r in signed]
        for case_id in hash_order(ids, aided.seed):
            read = services.read_next(reader=w.reader, trial=w.trial, phase="aided")
            self.assertEqual(read.case_id, case_id)
            Read.objects.filter(pk=read.pk).update(status="signed", signed_at=timezone.now(), signature_name="R")
        self.assertIsNone(services.read_next(reader=w.reader, trial=w.trial, phase="aided"))

    def test_an_aided_assignment_made_after_unaided_reads_queues_the_signed_cases(self):
        w = ReadingWorld(aided=False, reading=False)
        w.add_cases(2)
        w.start_reading()
        signed = [w.signed_read(w.reader) for _ in range(2)]
        services.read_next(reader=w.reader, trial=w.trial, phase="unaided")  # a draft: not signed, not queued
        from reading.models import ReadingSetup

        ReadingSetup.objects.filter(trial=w.trial).update(aided_phase=True)  # (fixed by the service once reads exist)
        aided = services.reader_assign(actor=w.manager, trial=w.trial, reader=w.reader, phase="aided", group="resident")
        self.assertEqual(
            set(QueuedCase.objects.filter(assignment=aided).values_list("case_id", flat=True)),
            {r.case_id for r in signed},
        )


class WashoutApiTests(TestCase):
    def test_the_api_names_the_date_the_next_aided_case_opens(self):
        w = ReadingWorld(aided=True)
        unaided = w.signed_read(w.reader)
        signed_at = timezone.now() - timedelta(days=10)
        Read.objects.filter(pk=unaided.pk).update(signed_at=signed_at)
        api = APIClient()
        api.force_authenticate(w.reader)
        response = api.post(f"/api/v1/reading/trials/{w.trial.slug}/next/", {"phase": "aided"})
        self.assertEqual(response.status_code, 409, response.content)
        error = response.json()["error"]
        self.assertEqual(error["code"], "washout")
        self.assertEqual(error["opens_at"], (signed_at + timedelta(days=28)).isoformat())
        # A reader with nothing signed unaided has nothing to wait for: 204, as when everything is read.
        api.force_authenticate(w.reader2)
        response = api.post(f"/api/v1/reading/trials/{w.trial.slug}/next/", {"phase": "aided"})
        self.assertEqual(response.status_code, 204)


# Pinned: next case (the service) in a trial of 4 cases as in one of 40, in both phases: trial and assignment (row
# lock), the resume check, the set-up, the walk, the last number, (aided: the unaided read), the insert and its
# savepoint, the queue, the assignment's time and the audit event (the read's foreign keys are rows just read: not
# looked up again).
NEXT_UNAIDED_QUERIES = 18
NEXT_AIDED_QUERIES = 19


class QueryCountTests(TestCase):
    def next_case(self, w, phase, expected) -> None:
        with self.assertNumQueries(expected):
            read = services.read_next(reader=w.reader, trial=w.trial, phase=phase)
        self.assertIsNotNone(read)

    def pinned(self, extra_cases: int) -> None:
        w = ReadingWorld(aided=True, reading=False)
        if extra_cases:
            w.add_cases(extra_cases)
        w.start_reading()
        for _ in range(2):
            w.signed_read(w.reader)
        self.next_case(w, "unaided", NEXT_UNAIDED_QUERIES)
        Read.objects.filter(reader=w.reader, status="signed").update(signed_at=timezone.now() - timedelta(days=29))
        self.next_case(w, "aided", NEXT_AIDED_QUERIES)

    def test_a_small_trial(self):
        self.pinned(2)  # four cases

    def test_a_trial_ten_times_larger(self):
        self.pinned(38)


class MigrationTests(TestCase):
    def test_the_migrations_fill_the_case_columns_and_the_queues_as_the_services_do(self):
        w = ReadingWorld(aided=True, reading=False)
        w.add_cases(3)
        w.start_reading()
        w.signed_read(w.reader)
        before_queue = set(QueuedCase.objects.values_list("assignment_id", "case_id", "rank"))
        before_cases = set(Case.objects.values_list("pk", "trial_id", "site_id"))
        # A case put at the other site of its trial, and every queue emptied: the backfills put them right.
        Case.objects.filter(pk=w.case1.pk).update(site_id=w.case2.site_id)
        QueuedCase.objects.all().delete()
        from django.apps import apps

        trials_migration = importlib.import_module("trials.migrations.0010_case_trial_site")
        reading_migration = importlib.import_module("reading.migrations.0003_reader_queue")
        with connection.schema_editor(atomic=False) as editor:
            trials_migration.backfill(apps, editor)
            reading_migration.fill(apps, editor)
        self.assertEqual(set(Case.objects.values_list("pk", "trial_id", "site_id")), before_cases)
        self.assertEqual(set(QueuedCase.objects.values_list("assignment_id", "case_id", "rank")), before_queue)


class SqliteRankTests(TestCase):
    def test_the_sqlite_rank_keeps_the_order_of_the_md5_text(self):
        ids = [uuid.UUID(int=n * 7919 + 13).hex for n in range(200)]
        by_text = sorted(ids, key=lambda i: hashlib.md5(f"7:{i}".encode(), usedforsecurity=False).hexdigest())
        self.assertEqual(sorted(ids, key=lambda i: sqlite_reader_rank(7, i)), by_text)
        self.assertTrue(all(-(2**63) <= sqlite_reader_rank(7, i) < 2**63 for i in ids))
        self.assertIsNone(sqlite_reader_rank(None, ids[0]))


class QueueRaceTests(TransactionTestCase):
    """A reader assigned while a case becomes complete (or while they sign the unaided read that queues it for the
    aided phase) finds the case in their queue, whichever transaction commits first (PostgreSQL, real threads).
    The services' paths also pin that neither waits for the other forever: with FOR UPDATE (not NO KEY UPDATE) on
    the case's or read's trial, completing or signing while a reader is assigned was a deadlock."""

    def setUp(self):
        require_postgresql()
        self.w = ReadingWorld(aided=True, reading=False)
        self.case = self.w.add_cases(1, complete=False)[0]
        attach_photograph(self.case, self.w.coord1)
        self.late = member(Role.READER, self.w.h1, email="late@visus.example")

    def assign(self, phase: str) -> None:
        services.reader_assign(
            actor=self.w.manager, trial=self.w.trial, reader=self.late, phase=phase, group="resident"
        )

    def complete(self) -> None:
        case_set_status(actor=self.w.coord1, case=self.case, status="complete")

    def queued(self, phase: str) -> bool:
        return QueuedCase.objects.filter(case=self.case, assignment__reader=self.late, assignment__phase=phase).exists()

    def test_a_case_completed_while_a_reader_is_assigned_is_queued_for_them(self):
        self.assertEqual(interleaved(lambda: self.assign("unaided"), self.complete), [])
        self.assertTrue(self.queued("unaided"))

    def test_a_reader_assigned_while_a_case_is_completed_gets_it(self):
        self.assertEqual(interleaved(self.complete, lambda: self.assign("unaided")), [])
        self.assertTrue(self.queued("unaided"))

    def test_the_queue_functions_order_themselves_before_any_audit_event(self):
        # Raw writes, no audit event before the queue's statements: queue_lock alone orders the two.
        def assign():
            a = ReaderAssignment.objects.create(
                trial=self.w.trial, reader=self.late, phase="unaided", group="resident", seed=7
            )
            queue.queue_fill(a)

        def complete():
            with transaction.atomic():
                Case.objects.filter(pk=self.case.pk).update(status="complete")
                queue.queue_case_completed(case=Case.objects.get(pk=self.case.pk))

        self.assertEqual(interleaved(assign, complete), [])
        self.assertTrue(self.queued("unaided"))

    def draft(self):
        self.complete()
        self.assign("unaided")
        self.w.start_reading()
        read = services.read_next(reader=self.late, trial=self.w.trial, phase="unaided")
        while read.case_id != self.case.pk:  # the late reader's own order: sign until the racing case comes up
            self.sign(read)
            read = services.read_next(reader=self.late, trial=self.w.trial, phase="unaided")
        return services.read_draft_save(
            reader=self.late, read=read, version=read.version, answers=GOOD, confidences=GOOD_CONF
        )

    def sign(self, read) -> None:
        read = services.read_draft_save(
            reader=self.late, read=read, version=read.version, answers=GOOD, confidences=GOOD_CONF
        )
        services.read_sign(
            read=read, signer=self.late, password=PASSWORD, meaning=services.MEANING_READ, version=read.version
        )

    def test_an_unaided_read_signed_while_the_aided_assignment_is_made_is_queued_in_it(self):
        read = self.draft()
        self.assertEqual(interleaved(lambda: self.assign("aided"), lambda: self.sign(read)), [])
        self.assertTrue(self.queued("aided"))

    def test_an_aided_assignment_made_while_an_unaided_read_is_signed_gets_its_case(self):
        read = self.draft()
        self.assertEqual(interleaved(lambda: self.sign(read), lambda: self.assign("aided")), [])
        self.assertTrue(self.queued("aided"))


class ReadNextRaceTests(TransactionTestCase):
    """A reader asking for their next case while a case of the trial is completed (which queues it for every
    unaided assignment, under the audit chain's lock): both finish, in either order (PostgreSQL, real threads).
    With FOR UPDATE (not NO KEY UPDATE) on the reader's assignment, read_next held it while waiting for the audit
    chain's lock, and the completion's foreign-key check of its queue rows, at its commit, waited for read_next:
    a deadlock."""

    def setUp(self):
        require_postgresql()
        self.w = ReadingWorld(reading=False)
        self.racing = self.w.add_cases(3, complete=False)
        for case in self.racing:
            attach_photograph(case, self.w.coord1)
        self.w.start_reading()
        self.readers = [self.w.reader, self.w.reader2, self.w.reader3]

    def complete(self, case) -> None:
        case_set_status(actor=self.w.coord1, case=case, status="complete")

    def open_next(self, reader) -> None:
        self.assertIsNotNone(services.read_next(reader=reader, trial=self.w.trial, phase="unaided"))

    def check(self) -> None:
        for reader in self.readers:
            self.assertEqual(Read.objects.filter(reader=reader, status="draft").count(), 1)
        for case in self.racing:
            self.assertEqual(Case.objects.get(pk=case.pk).status, "complete")
            queued_or_read = {
                *QueuedCase.objects.filter(case=case).values_list("assignment__reader", flat=True),
                *Read.objects.filter(case=case).values_list("reader", flat=True),
            }
            self.assertEqual(queued_or_read, {r.pk for r in self.readers})

    def test_a_case_completed_while_a_reader_opens_their_next_case(self):
        for case, reader in zip(self.racing, self.readers, strict=True):
            self.assertEqual(interleaved(lambda c=case: self.complete(c), lambda r=reader: self.open_next(r)), [])
        self.check()

    def test_a_reader_opening_their_next_case_while_a_case_is_completed(self):
        for case, reader in zip(self.racing, self.readers, strict=True):
            self.assertEqual(interleaved(lambda r=reader: self.open_next(r), lambda c=case: self.complete(c)), [])
        self.check()


LOCKING = re.compile(r"\bFOR (NO KEY )?UPDATE\b")


class ReadersDoNotWaitForEachOtherTests(TransactionTestCase):
    """Readers of one trial asking for their next case at once do not queue behind each other for their own
    assignments (PostgreSQL, real threads). The assignment's row lock used to take the rows its model ordering joined
    as well (the trial, the reader): every reader of the trial waited for the one before them to commit."""

    def setUp(self):
        require_postgresql()
        self.w = ReadingWorld()

    def test_a_second_reader_takes_their_assignment_while_the_first_holds_theirs(self):
        _, errors = while_held(
            lambda: services._own_assignment(self.w.reader, self.w.trial, Phase.UNAIDED),
            lambda: services._own_assignment(self.w.reader2, self.w.trial, Phase.UNAIDED),  # lock timeout if it waits
        )
        self.assertEqual(errors, [])

    def test_row_locks_of_next_case_and_draft_save_name_the_locked_table(self):
        """Every locking statement of a reader's next case and draft save with a join says which table it locks."""
        with CaptureQueriesContext(connection) as queries:
            read = services.read_next(reader=self.w.reader, trial=self.w.trial, phase=Phase.UNAIDED)
            services.read_draft_save(
                reader=self.w.reader, read=read, version=read.version, answers=GOOD, confidences=GOOD_CONF
            )
        locking = [q["sql"] for q in queries.captured_queries if LOCKING.search(q["sql"])]
        self.assertGreaterEqual(len(locking), 2)
        for sql in locking:
            if " JOIN " in sql:
                self.assertRegex(sql, r"FOR (NO KEY )?UPDATE OF ", sql)

    def test_row_locks_of_reader_assign_and_setup_set_name_the_locked_table(self):
        """The manager's reader assignment and set-up change lock their own row, not the trial (nor the reader) that
        the model's ordering joins: a case completed or a reader's next case meanwhile holds the trial's row while it
        waits for the audit chain's lock."""
        with CaptureQueriesContext(connection) as queries:
            services.reader_assign(
                actor=self.w.manager, trial=self.w.trial, reader=self.w.reader, phase=Phase.UNAIDED, group="attending"
            )
            services.reading_setup_set(actor=self.w.manager, trial=self.w.trial, washout_days=30)
        locking = [q["sql"] for q in queries.captured_queries if LOCKING.search(q["sql"])]
        self.assertGreaterEqual(len(locking), 2)
        for sql in locking:
            if " JOIN " in sql:
                self.assertRegex(sql, r"FOR (NO KEY )?UPDATE OF ", sql)
