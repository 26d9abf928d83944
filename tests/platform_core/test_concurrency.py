"""Concurrency on PostgreSQL with real threads (issue 13, item 6): every racer gets a clear answer, never a 500,
nothing is created twice, and the audit chain stays whole.

Each test starts its threads together at a barrier; each thread has its own database connection (closed at its
end), as two web workers would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection
from django.test import TransactionTestCase

from platform_core.accounts.models import Role
from platform_core.audit.models import AuditEvent
from platform_core.audit.services import audit_verify
from platform_core.errors import ApplicationError
from reading import services as reading
from reading.models import Read
from tests.support import require_postgresql
from tests.support.factories import enrol, member
from tests.support.reading import GOOD, GOOD_CONF, PASSWORD, ReadingWorld
from trials.models import Subject


def race(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``n`` threads released together; returns each result or the exception it raised."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except Exception as exc:  # collected: the test asserts which are acceptable
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def clear_refusals(results: list[Any]) -> list[Any]:
    """The exceptions among ``results``; each must be one a page or the API turns into a clear 4xx."""
    errors = [r for r in results if isinstance(r, Exception)]
    for error in errors:
        if not isinstance(error, ApplicationError | ValidationError):
            raise AssertionError(f"a racer got {type(error).__name__}: {error}") from error
    return errors


class EnrolmentRaceTests(TransactionTestCase):
    def setUp(self):
        require_postgresql()
        self.w = ReadingWorld(reading=False)

    def test_coordinators_enrolling_at_once_get_distinct_pseudonyms(self):
        coordinators = [self.w.coord1] + [
            member(Role.COORDINATOR, self.w.h1, email=f"coord1-{n}@visus.example") for n in range(5)
        ]
        before = Subject.objects.count()
        results = race(6, lambda i: enrol(coordinator=coordinators[i], trial=self.w.trial, hospital=self.w.h1))
        self.assertEqual(clear_refusals(results), [])
        pseudonyms = [subject.pseudonym for subject in results]
        self.assertEqual(len(set(pseudonyms)), 6)
        self.assertEqual(Subject.objects.count(), before + 6)
        self.assertTrue(audit_verify().ok)

    def test_one_enrolment_submitted_eight_times_at_once_enrols_one_subject(self):
        before = Subject.objects.count()
        results = race(
            8, lambda i: enrol(coordinator=self.w.coord1, trial=self.w.trial, hospital=self.w.h1, token="t1")
        )
        errors = clear_refusals(results)
        self.assertEqual(Subject.objects.count(), before + 1)
        self.assertEqual(len(errors), 7)
        for error in errors:
            self.assertEqual(getattr(error, "code", ""), "duplicate_submission", error)
        self.assertTrue(audit_verify().ok)


class SigningRaceTests(TransactionTestCase):
    def setUp(self):
        require_postgresql()
        self.w = ReadingWorld()

    def draft(self, reader) -> Read:
        read = reading.read_next(reader=reader, trial=self.w.trial, phase="unaided")
        return reading.read_draft_save(
            reader=reader, read=read, version=read.version, answers=GOOD, confidences=GOOD_CONF
        )

    def test_two_readers_signing_at_once_both_sign(self):
        reads = [self.draft(self.w.reader), self.draft(self.w.reader2)]
        readers = [self.w.reader, self.w.reader2]
        results = race(
            2,
            lambda i: reading.read_sign(
                read=reads[i],
                signer=readers[i],
                password=PASSWORD,
                meaning=reading.MEANING_READ,
                version=reads[i].version,
                username=readers[i].email,
            ),
        )
        self.assertEqual(clear_refusals(results), [])
        self.assertEqual(Read.objects.filter(pk__in=[r.pk for r in reads], status="signed").count(), 2)
        self.assertTrue(audit_verify().ok)

    def test_a_reader_double_submitting_the_signature_signs_once(self):
        read = self.draft(self.w.reader)
        # Four at once: every signature counts as a sign-in attempt before its password is checked (accounts'
        # login_attempt_begin), so VISUS_LOCKOUT_THRESHOLD (5) simultaneous ones lock the account for a moment
        # by design, and the fifth would be refused as "locked", not as "signed" or "stale".
        results = race(
            4,
            lambda i: reading.read_sign(
                read=read,
                signer=self.w.reader,
                password=PASSWORD,
                meaning=reading.MEANING_READ,
                version=read.version,
                username=self.w.reader.email,
            ),
        )
        errors = clear_refusals(results)
        self.assertEqual(len(errors), 3)
        for error in errors:
            self.assertIn(getattr(error, "code", ""), {"signed", "stale"}, error)
        self.assertEqual(AuditEvent.objects.filter(action="read.sign", object_id=str(read.pk)).count(), 1)
        read.refresh_from_db()
        self.assertEqual(read.status, "signed")
        self.assertTrue(audit_verify().ok)
