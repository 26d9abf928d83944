"""The locust users of bench_load (not a benchmark by itself: ``make bench ARGS=bench_load`` starts it).

``BENCH_LOAD_CREDENTIALS`` names the JSON file bench_load's seeding wrote (API tokens, session keys);
bench_load names the user class of its scenario: ``CaseListUser`` (the case list API), ``ReaderUser`` (readers
asking for their next case, then saving a draft) or ``DashboardUser`` (the evaluation dashboard page). Requests carry
``X-Forwarded-Proto: https`` and ``X-Forwarded-For`` as the TLS proxy in front of gunicorn would (production
redirects plain HTTP and keeps the session cookie to HTTPS).

The users are locust's ``FastHttpUser`` (geventhttpclient), not ``HttpUser`` (requests): the load generator shares the
machine's cores with gunicorn and PostgreSQL, and the lighter client takes less of them from the server and adds less
of its own time to what it measures.
"""

from __future__ import annotations

import itertools
import json
import os
import random

import gevent
from locust import between, task
from locust.contrib.fasthttp import FastHttpUser

CREDENTIALS = json.loads(open(os.environ["BENCH_LOAD_CREDENTIALS"]).read())
WAIT = tuple(float(v) for v in os.environ.get("BENCH_LOAD_WAIT", "1,3").split(","))
PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "127.0.0.1"}
_accounts = {
    "list": itertools.cycle(CREDENTIALS["list_tokens"]),
    "next": itertools.cycle(CREDENTIALS["reader_tokens"]),
    "dashboard": itertools.cycle(CREDENTIALS["sessions"]),
}
_db = None


def _sign_now(read_id: str) -> None:
    global _db
    if _db is None:
        import psycopg2

        _db = psycopg2.connect(CREDENTIALS["database"])
        _db.autocommit = True
    with _db.cursor() as cursor:
        cursor.execute(
            "UPDATE reading_read SET status = 'signed', signed_at = now(), signature_name = 'Load Reader', "
            "signature_meaning = 'I am the author of this read', version = version + 1 WHERE id = %s",
            [read_id],
        )


def _sign(read_id: str) -> None:
    """What the reader's signature does to the row (status, time, name); the password check it costs is not timed.
    Run in gevent's thread pool: psycopg2 blocks, and on locust's own loop it froze every user while it ran (up to
    30 ms), adding that wait to the requests other users had in flight, which were being timed."""
    gevent.get_hub().threadpool.apply(_sign_now, (read_id,))


class CaseListUser(FastHttpUser):
    wait_time = between(*WAIT)

    def on_start(self) -> None:
        self.h = {**PROXY, "Authorization": f"Token {next(_accounts['list'])}"}

    @task
    def case_list(self) -> None:
        page = random.randint(1, 10)
        self.client.get(f"/api/v1/cases/?page={page}", name="case list", headers=self.h)


class ReaderUser(FastHttpUser):
    wait_time = between(*WAIT)

    def on_start(self) -> None:
        self.h = {**PROXY, "Authorization": f"Token {next(_accounts['next'])}"}
        self.phase = random.choice(("unaided", "aided"))

    @task
    def next_case(self) -> None:
        url = f"/api/v1/reading/trials/{CREDENTIALS['trial']}/next/"
        with self.client.post(
            url, json={"phase": self.phase}, name="next case", catch_response=True, headers=self.h
        ) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            read = response.json()
        answers = {"icdr_grade": "2", "referable_dr": "yes", "confidence": 70}
        confidences = {"icdr_grade": 70, "referable_dr": 80}
        body = {"version": read["version"], "answers": answers, "confidences": confidences, "seconds": 30}
        draft = self.client.put(
            f"/api/v1/reading/reads/{read['id']}/draft/", json=body, name="draft save", headers=self.h
        )
        if draft.status_code == 200:
            _sign(read["id"])


class DashboardUser(FastHttpUser):
    wait_time = between(*WAIT)

    def on_start(self) -> None:
        self.h = {**PROXY, "Cookie": f"sessionid={next(_accounts['dashboard'])}"}

    @task
    def dashboard(self) -> None:
        self.client.get(CREDENTIALS["dashboard"], name="dashboard", headers=self.h)
