"""schemathesis against the API's own description (issue 13, item 7): every operation of ``/api/schema/``, as each
role and signed out, with requests generated from the schema, valid and invalid, answers without a server error and
as the schema says: a documented status code, its content type and its response schema.

The schema is loaded from ``/api/schema/`` and the requests go in-process to Django's WSGI application, inside the
test's transaction (so they see this world and are rolled back after each role). To reach past the 404 and the
validation errors, path parameters are also the world's real trials, subjects, cases, reads, marks, assignments and
adjudications, and the first valid request of each run gets real values where a body field names one (a hospital
code, a reader's e-mail, a case, a file, the password, a complete set of answers, a fundus photograph to upload).
Generation is derandomized: a failure is found again on every run.
"""

from __future__ import annotations

import io
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import hypothesis
import schemathesis
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import got_request_exception, request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import TestCase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from platform_core.accounts.models import Role
from platform_core.accounts.services import api_token_issue
from platform_core.api.permissions import HasAnyRole
from reading import services as reading_services
from reading.models import Adjudication
from tests.support import image_factories
from tests.support.factories import ELIGIBLE, TEST_PASSWORD, MembershipFactory, enrol, make_trial
from tests.support.page_world import PageWorld
from tests.support.reading import GOOD, GOOD_CONF
from tests.support.storage import delete_stored_models_and_case_files
from trials.models import CaseFile
from trials.services import case_create

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# Generated requests per run (an operation, a role, and its path parameters generated or real): small, so that the
# walk over every operation and role stays within a few minutes on a busy machine. VISUS_FUZZ_SCALE=5 (say) makes
# a deeper run by hand: 5 times as many requests, still derandomized.
SCALE = max(1, int(os.environ.get("VISUS_FUZZ_SCALE", "1")))
EXAMPLES = 2 * SCALE  # valid requests
NEGATIVE_EXAMPLES = 3 * SCALE  # invalid ones (a wrong type, a missing field, a value outside the schema)
ANONYMOUS_EXAMPLES = 2

# Operations left out, each with its reason. None so far: every operation is fuzzed, uploads included.
EXCLUDED: dict[str, str] = {}


@contextmanager
def in_test_transaction() -> Iterator[list[BaseException]]:
    """Requests to the WSGI application inside the test's transaction, as Django's test client sends them: the
    handler must not close the connection at the end of each request. Yields the exceptions views raised."""
    raised: list[BaseException] = []

    def note(sender: Any, request: Any = None, **kwargs: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is not None:
            raised.append(exc)

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    got_request_exception.connect(note)
    try:
        yield raised
    finally:
        got_request_exception.disconnect(note)
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


# The answer of a role-based permission (platform_core.api.permissions), given before the request is read.
ROLE_REFUSED = (403, HasAnyRole.message)


def _error_message(response: Any) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return ""


def fundus_png() -> bytes:
    buffer = io.BytesIO()
    image_factories.photo(400, 300).save(buffer, format="PNG")
    return buffer.getvalue()


class ApiSchemaFuzzTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        # A trial in reading with photographs, an AI prediction and a reader's open read (PageWorld)...
        w = cls.w = PageWorld()
        # ...a second trial, recruiting, where coordinators enrol, create cases and upload...
        cls.recruiting = make_trial(manager=w.manager, slug="glaucoma-trial", prefix="GL01", hospitals=[w.h1, w.h2])
        subject = enrol(coordinator=w.coord1, trial=cls.recruiting, hospital=w.h1)
        case = case_create(actor=w.coord1, subject=subject, laterality="OD", visit_day=3)
        # ...the reader's draft, complete (so that it can be signed), with a lesion mark...
        read = reading_services.read_draft_save(
            reader=w.reader, read=w.read, version=w.read.version, answers=GOOD, confidences=GOOD_CONF
        )
        mark = reading_services.mark_add(
            reader=w.reader, read=read, case_file=w.files[read.case_id], kind="microaneurysm", shape="point", x=9, y=9
        )
        read.refresh_from_db()
        # ...and an adjudication waiting for the panel.
        adjudication = Adjudication.objects.create(case=w.case2, trial=w.trial, discordance=["icdr_grade"])
        # The mixed-role user reads at H02 (and sits on the adjudication panel) and coordinates at H01.
        MembershipFactory(user=w.adjudicator, hospital=w.h1, role=Role.COORDINATOR)
        cls.people = {
            "coordinator": w.coord1,
            "reader": w.reader,
            "manager": w.manager,
            "monitor": w.monitor,
            "mixed": w.adjudicator,
        }
        cls.tokens = {name: api_token_issue(user=user) for name, user in cls.people.items()}
        site = w.trial.sites.get(hospital=w.h1)
        assignment = w.assignments[(w.reader.pk, "unaided")]
        # Real objects for the path parameters, by the path they follow.
        cls.real_ids = {
            "/api/v1/subjects/": [w.subject1.pk, w.subject2.pk, subject.pk],
            "/api/v1/cases/": [w.case1.pk, w.case2.pk, case.pk],
            "/api/v1/trials/": [site.pk],
            "/api/v1/reading/reads/": [read.pk],
            "/api/v1/reading/marks/": [mark.pk],
            "/api/v1/reading/assignments/": [assignment.pk],
            "/api/v1/reading/adjudications/": [adjudication.pk],
        }
        cls.slugs = [w.trial.slug, cls.recruiting.slug]
        # Real values for body fields, by the field's name.
        cls.real_fields = {
            "site": w.h1.code,
            "hospital": w.h2.code,
            "reader": w.reader3.email,
            "user": w.reader2.email,
            "email": w.reader.email,
            "case": str(w.case2.pk),
            "case_file": str(w.files[w.read.case_id].pk),
            "eligibility": ELIGIBLE,
            "diabetes_type": "type2",
            "consent_date": "2026-01-05",
            "password": TEST_PASSWORD,
            "version": read.version,
            "answers": GOOD,
            "known_answers": GOOD,
            "confidences": GOOD_CONF,
            "file": fundus_png(),
        }
        cls.adjudication_version = adjudication.version
        cls.world_files = set(CaseFile.objects.values_list("pk", flat=True))

    @classmethod
    def tearDownClass(cls) -> None:
        delete_stored_models_and_case_files()
        super().tearDownClass()

    def setUp(self) -> None:
        cache.clear()  # throttles and sign-in counters start afresh for every role

    def tearDown(self) -> None:
        # Files uploaded by the requests: their rows are rolled back with the test, the stored objects are not.
        for case_file in CaseFile.objects.exclude(pk__in=self.world_files):
            for stored in (case_file.content, case_file.preview, case_file.thumbnail):
                if stored.name:
                    stored.storage.delete(stored.name)

    def _path_values(self, operation: Any) -> list[dict[str, str]]:
        """Real values for the operation's path parameters (none when it has none)."""
        names = {p.name for p in operation.path_parameters}
        ids = next((values for prefix, values in self.real_ids.items() if operation.path.startswith(prefix)), [])
        choices = []
        for slug in self.slugs if "slug" in names else [None]:
            for pk in ids if "id" in names else [None]:
                values = {name: str(value) for name, value in (("slug", slug), ("id", pk)) if value is not None}
                if values and set(values) == names:
                    choices.append(values)
        return choices

    def _plan(self, operation: Any, *, signed_in: bool) -> list[tuple[GenerationMode, dict | None, int]]:
        """The runs for one operation: valid requests with generated path parameters and with each real object's,
        then invalid ones (against a real object where the path names one)."""
        real = self._path_values(operation)
        if not signed_in:
            return [(GenerationMode.POSITIVE, real[0] if real else None, ANONYMOUS_EXAMPLES)]
        plan: list[tuple[GenerationMode, dict | None, int]] = [(GenerationMode.POSITIVE, None, EXAMPLES)]
        plan += [(GenerationMode.POSITIVE, values, EXAMPLES) for values in real]
        # A slug alone cannot be made invalid (any text in a path segment is one); a body, a query or a UUID can.
        if list(operation.body) or list(operation.query):
            plan.append((GenerationMode.NEGATIVE, real[0] if real else None, NEGATIVE_EXAMPLES))
        elif any(p.definition.get("schema", {}).get("format") == "uuid" for p in operation.path_parameters):
            plan.append((GenerationMode.NEGATIVE, None, NEGATIVE_EXAMPLES))
        return plan

    def _with_real_fields(self, case: Any, username: str | None) -> Any:
        if isinstance(case.body, dict):
            for name in case.body:
                if name in self.real_fields:
                    case.body[name] = self.real_fields[name]
            if "version" in case.body and "/adjudications/" in case.path:
                case.body["version"] = self.adjudication_version
            if "password" in case.body and username:  # an e-signature: the session's first gives the e-mail too
                case.body["username"] = username
        return case

    def _fuzz(self, role: str) -> None:
        token = self.tokens.get(role)
        user = self.people.get(role)
        headers = {"Authorization": f"Token {token}"} if token else {}
        with in_test_transaction() as raised:
            schema = schemathesis.openapi.from_wsgi(
                "/api/schema/?format=json", WSGIHandler(), headers={"Authorization": f"Token {self.tokens['manager']}"}
            )
            operations = [result.ok() for result in schema.get_all_operations()]
            self.assertGreater(len(operations), 50)
            for operation in operations:
                if operation.label in EXCLUDED:
                    continue
                for mode, path, examples in self._plan(operation, signed_in=bool(token)):
                    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path)
                    if mode is GenerationMode.POSITIVE:
                        # The first request of each run with the real values, the others as generated.
                        strategy = st.tuples(strategy, st.sampled_from([True, False])).map(
                            lambda drawn: (
                                self._with_real_fields(drawn[0], user and user.email) if drawn[1] else drawn[0]
                            )
                        )
                    statuses: set[tuple[int, str]] = set()
                    with self.subTest(role=role, operation=operation.label, mode=mode.value, path=path):
                        statuses = self._run(
                            strategy, app=schema.app, headers=headers, raised=raised, examples=examples
                        )
                    if statuses == {ROLE_REFUSED}:
                        break  # the role may not use this operation at all: other requests get the same 403

    def _run(self, strategy: Any, *, app: Any, headers: dict, raised: list, examples: int) -> set[tuple[int, str]]:
        """Generate and send the requests of one run; their statuses (with the error messages)."""
        statuses: set[tuple[int, str]] = set()

        @hypothesis.settings(
            max_examples=examples,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            suppress_health_check=list(hypothesis.HealthCheck),
            print_blob=False,
        )
        @hypothesis.given(case=strategy)
        def check(case: Any) -> None:
            raised.clear()
            # A request that fails in the database leaves the transaction usable for the next one.
            savepoint = transaction.savepoint()
            response = case.call(app=app, headers=headers)
            statuses.add((response.status_code, _error_message(response)))
            if response.status_code >= 500:
                transaction.savepoint_rollback(savepoint)
            else:
                transaction.savepoint_commit(savepoint)
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except Exception as failure:
                if raised:
                    trace = "".join(traceback.format_exception(raised[-1]))
                    raise AssertionError(f"{failure}\nThe view raised:\n{trace}") from None
                raise

        check()
        return statuses

    def test_anonymous(self) -> None:
        self._fuzz("anonymous")

    def test_coordinator(self) -> None:
        self._fuzz("coordinator")

    def test_reader(self) -> None:
        self._fuzz("reader")

    def test_manager(self) -> None:
        self._fuzz("manager")

    def test_monitor(self) -> None:
        self._fuzz("monitor")

    def test_mixed_roles(self) -> None:
        self._fuzz("mixed")
