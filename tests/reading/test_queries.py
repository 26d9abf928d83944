"""Query-count pins: the next-case request and the draft save stay constant as cases and readers grow."""

from __future__ import annotations

from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from platform_core.accounts.models import Role
from reading import services
from tests.support.factories import member
from tests.support.reading import GOOD, GOOD_CONF, ReadingWorld

# Pinned: the same in a trial of 2 cases and 3 readers as in one of 27 cases and 9 readers.
NEXT_CASE_QUERIES = (
    23  # permission, trial, assignment lock, resume check, order, insert, queue, audit (+ head), response
)
# permission, the read, its lock, the update, audit (+ head), the response: audited_save validates the fields it
# writes only (was 27: foreign keys and unique constraints of unchanged fields looked up again).
DRAFT_SAVE_QUERIES = 17


class QueryPinTests(TestCase):
    def count(self, call) -> int:
        with CaptureQueriesContext(connection) as ctx:
            call()
        return len(ctx.captured_queries)

    def measure(self, w):
        api = APIClient()
        api.force_authenticate(w.reader)
        url = f"/api/v1/reading/trials/{w.trial.slug}/next/"
        next_case = self.count(lambda: api.post(url, {"phase": "unaided"}))
        read = services.read_next(reader=w.reader, trial=w.trial, phase="unaided")
        draft = self.count(
            lambda: api.put(
                f"/api/v1/reading/reads/{read.pk}/draft/",
                {"version": read.version, "answers": GOOD, "confidences": GOOD_CONF},
                format="json",
            )
        )
        return next_case, draft

    def test_small_trial(self):
        w = ReadingWorld()
        self.assertEqual(self.measure(w), (NEXT_CASE_QUERIES, DRAFT_SAVE_QUERIES))

    def test_more_cases_and_readers_same_counts(self):
        w = ReadingWorld(reading=False)
        w.add_cases(25)
        for n in range(6):
            reader = member(Role.READER, w.h1, email=f"more{n}@visus.example")
            services.reader_assign(actor=w.manager, trial=w.trial, reader=reader, phase="unaided", group="resident")
        w.start_reading()
        for reader in (w.reader2, w.reader3):
            w.signed_read(reader)
        self.assertEqual(self.measure(w), (NEXT_CASE_QUERIES, DRAFT_SAVE_QUERIES))


# Pinned: the same with 2 open adjudications as with 10 (their prior reads and images are prefetched).
ADJUDICATION_QUEUE_QUERIES = 13


class AdjudicationQueuePinTests(TestCase):
    def queue_queries(self, adjudications: int) -> int:
        from reading.models import Adjudication

        w = ReadingWorld(reading=False)
        w.add_cases(adjudications - len(w.cases))
        w.start_reading()
        for _ in w.cases:
            w.signed_read(w.reader, answers={"icdr_grade": "0", "referable_dr": "no", "confidence": 90})
            w.signed_read(w.reader2, answers={"icdr_grade": "3", "referable_dr": "yes", "confidence": 90})
        self.assertEqual(Adjudication.objects.filter(trial=w.trial).count(), adjudications)
        self.client.force_login(w.adjudicator)
        with CaptureQueriesContext(connection) as ctx:
            page = self.client.get(f"/reading/trials/{w.trial.slug}/adjudication/")
        self.assertEqual(page.status_code, 200)
        # Every case's image and both prior reads are on the page (the prefetch leaves nothing out).
        html = page.content.decode()
        self.assertEqual(html.count('data-testid="adjudication"'), adjudications)
        self.assertEqual(html.count('<img src="/reading/adjudications/'), adjudications)
        self.assertEqual(html.count("<td>2</td>"), adjudications)
        return len(ctx.captured_queries)

    def test_two_adjudications(self):
        self.assertEqual(self.queue_queries(2), ADJUDICATION_QUEUE_QUERIES)

    def test_ten_adjudications_same_count(self):
        self.assertEqual(self.queue_queries(10), ADJUDICATION_QUEUE_QUERIES)
