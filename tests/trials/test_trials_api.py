import uuid

from django.test import TestCase, TransactionTestCase, tag
from django.urls import reverse
from rest_framework.test import APIClient

from platform_core.accounts.models import Role
from tests.support import require_postgresql
from tests.support.factories import ELIGIBLE, TrialWorld, enrol, member
from tests.support.uploads import attach_photograph
from trials.models import Case, Subject


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


ENROL_BODY = {
    "site": "H01",
    "eligibility": ELIGIBLE,
    "consent_date": "2026-02-01",
    "consent_form_version": "v1.0",
    "sex": "female",
    "age": 64,
    "diabetes_type": "type2",
    "diabetes_duration_years": 9,
}


class TrialApiTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.w = TrialWorld()

    def test_manager_creates_and_opens_a_trial(self):
        client = client_for(self.w.manager)
        response = client.post(
            reverse("api:trials:trial-create"),
            {
                "slug": "glaucoma-vf",
                "protocol_number": "VF-9",
                "title": "VF glaucoma",
                "subject_prefix": "GL09",
                "modalities": ["visual_field"],
                "reading_form": ["glaucoma", "vf_reliable", "confidence"],
            },
            format="json",
        )
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(response.json()["status"], "draft")
        add = client.post(
            reverse("api:trials:trial-site-add", args=["glaucoma-vf"]),
            {"hospital": "H02", "enrolment_target": 12},
            format="json",
        )
        self.assertEqual(add.status_code, 201, add.content)
        moved = client.post(
            reverse("api:trials:trial-transition", args=["glaucoma-vf"]), {"status": "recruiting"}, format="json"
        )
        self.assertEqual(moved.json()["status"], "recruiting")
        bad = client.post(
            reverse("api:trials:trial-transition", args=["glaucoma-vf"]), {"status": "draft"}, format="json"
        )
        self.assertEqual(bad.status_code, 400)
        self.assertEqual(bad.json()["error"]["code"], "invalid_transition")

    def test_coordinator_cannot_create_trials(self):
        response = client_for(self.w.coord1).post(reverse("api:trials:trial-create"), {}, format="json")
        self.assertEqual(response.status_code, 403)

    def test_trial_list_is_filtered_and_scoped(self):
        self.assertEqual(
            [t["slug"] for t in client_for(self.w.coord1).get(reverse("api:trials:trial-list")).json()["results"]],
            ["dr-trial"],
        )
        self.assertEqual(
            client_for(self.w.coord1).get(reverse("api:trials:trial-list"), {"status": "closed"}).json()["count"], 0
        )
        self.assertEqual(client_for(self.w.outsider).get(reverse("api:trials:trial-list")).json()["count"], 0)
        self.assertEqual(
            client_for(self.w.outsider).get(reverse("api:trials:trial-detail", args=["dr-trial"])).status_code, 404
        )

    def test_coordinator_sees_only_their_site_in_the_site_list(self):
        sites = (
            client_for(self.w.coord1).get(reverse("api:trials:trial-site-list", args=["dr-trial"])).json()["results"]
        )
        self.assertEqual([s["hospital"] for s in sites], ["H01"])
        sites = (
            client_for(self.w.monitor).get(reverse("api:trials:trial-site-list", args=["dr-trial"])).json()["results"]
        )
        self.assertEqual([s["hospital"] for s in sites], ["H01", "H02"])


class EnrolApiTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.w = TrialWorld()

    def setUp(self):
        self.url = reverse("api:trials:subject-enroll", args=["dr-trial"])

    def test_coordinator_enrols_and_gets_the_pseudonym(self):
        response = client_for(self.w.coord1).post(self.url, ENROL_BODY, format="json")
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(response.json()["pseudonym"], "DR01-H01-0002")
        self.assertEqual(response.json()["age"], "64")

    def test_bad_enrolments_get_clear_errors_and_change_nothing(self):
        client = client_for(self.w.coord1)
        before = Subject.objects.count()
        cases = [
            ({**ENROL_BODY, "consent_date": None}, 400, "validation_error"),
            ({**ENROL_BODY, "eligibility": {**ELIGIBLE, "Age 18 or over": False}}, 400, "not_eligible"),
            ({**ENROL_BODY, "site": "H02"}, 400, "site_not_in_trial"),
            ({**ENROL_BODY, "site": "H77"}, 400, "site_not_in_trial"),
            ({**ENROL_BODY, "age": -3}, 400, "validation_error"),
        ]
        for body, status, code in cases:
            with self.subTest(code=code, body=body):
                response = client.post(self.url, body, format="json")
                self.assertEqual(response.status_code, status, response.content)
                self.assertEqual(response.json()["error"]["code"], code)
                self.assertTrue(response.json()["error"]["message"])
        self.assertEqual(Subject.objects.count(), before)

    def test_repeated_idempotency_key_is_refused_as_a_duplicate(self):
        client = client_for(self.w.coord1)
        key = uuid.uuid4().hex
        first = client.post(self.url, ENROL_BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)
        second = client.post(self.url, ENROL_BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)
        self.assertEqual(first.status_code, 201)
        self.assertEqual(second.status_code, 409)
        self.assertEqual(second.json()["error"]["code"], "duplicate_submission")
        self.assertEqual(second.json()["error"]["subject"], first.json()["pseudonym"])
        self.assertEqual(Subject.objects.filter(submission_token=key).count(), 1)

    def test_another_sites_idempotency_key_neither_blocks_nor_names_its_subject(self):
        key = "1"  # simple client keys collide across sites
        other = client_for(self.w.coord2).post(
            self.url, {**ENROL_BODY, "site": "H02"}, format="json", HTTP_IDEMPOTENCY_KEY=key
        )
        self.assertEqual(other.status_code, 201, other.content)
        mine = client_for(self.w.coord1).post(self.url, ENROL_BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)
        self.assertEqual(mine.status_code, 201, mine.content)
        self.assertNotIn(other.json()["pseudonym"], mine.content.decode())
        self.assertTrue(mine.json()["pseudonym"].startswith("DR01-H01-"))
        # A foreign coordinator replaying H02's key at H02 is refused for the site, not told its subject.
        foreign = client_for(self.w.coord1).post(
            self.url, {**ENROL_BODY, "site": "H02"}, format="json", HTTP_IDEMPOTENCY_KEY=key
        )
        self.assertNotIn(other.json()["pseudonym"], foreign.content.decode())
        self.assertIn(foreign.status_code, (400, 403, 404))

    def test_closed_trial_refuses_enrolment(self):
        client_for(self.w.manager).post(
            reverse("api:trials:trial-transition", args=["dr-trial"]),
            {"status": "closed", "reason": "futility"},
            format="json",
        )
        response = client_for(self.w.coord1).post(self.url, ENROL_BODY, format="json")
        self.assertEqual(response.json()["error"]["code"], "trial_not_recruiting")

    def test_readers_and_monitors_cannot_enrol(self):
        for user in (self.w.reader, self.w.monitor, self.w.manager):
            self.assertEqual(client_for(user).post(self.url, ENROL_BODY, format="json").status_code, 403)


class SubjectAndCaseApiTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.w = TrialWorld()

    def test_subject_list_is_scoped_by_site_and_role(self):
        url = reverse("api:trials:subject-list")
        self.assertEqual(
            [s["pseudonym"] for s in client_for(self.w.coord1).get(url).json()["results"]], ["DR01-H01-0001"]
        )
        self.assertEqual(len(client_for(self.w.statistician).get(url).json()["results"]), 2)
        self.assertEqual(client_for(self.w.reader).get(url).status_code, 403)
        self.assertEqual(client_for(self.w.monitor).get(url, {"site": "H02"}).json()["count"], 1)

    def test_case_workflow_through_the_api(self):
        client = client_for(self.w.coord1)
        created = client.post(
            reverse("api:trials:case-create", args=[self.w.subject1.pk]),
            {"laterality": "OS", "visit_day": 30},
            format="json",
        )
        self.assertEqual(created.status_code, 201, created.content)
        duplicate = client.post(
            reverse("api:trials:case-create", args=[self.w.subject1.pk]),
            {"laterality": "OS", "visit_day": 30},
            format="json",
        )
        self.assertEqual(duplicate.status_code, 409)
        case_id = created.json()["id"]
        empty = client.post(reverse("api:trials:case-status", args=[case_id]), {"status": "complete"}, format="json")
        self.assertEqual((empty.status_code, empty.json()["error"]["code"]), (400, "case_empty"))
        attach_photograph(Case.objects.get(pk=case_id), self.w.coord1)
        done = client.post(reverse("api:trials:case-status", args=[case_id]), {"status": "complete"}, format="json")
        self.assertEqual(done.json()["status"], "complete")
        cases = client.get(reverse("api:trials:case-list"), {"subject": "DR01-H01-0001", "status": "complete"}).json()
        self.assertEqual([c["id"] for c in cases["results"]], [case_id])

    def test_withdraw_through_the_api_requires_a_reason(self):
        url = reverse("api:trials:subject-withdraw", args=[self.w.subject1.pk])
        self.assertEqual(client_for(self.w.coord1).post(url, {}, format="json").status_code, 400)
        response = client_for(self.w.coord1).post(url, {"reason": "lost to follow-up"}, format="json")
        self.assertEqual(response.json()["status"], "withdrawn")

    def test_foreign_site_coordinator_gets_404_for_detail_and_writes(self):
        client = client_for(self.w.coord2)
        for name, pk in (
            ("subject-detail", self.w.subject1.pk),
            ("case-detail", self.w.case1.pk),
        ):
            self.assertEqual(client.get(reverse(f"api:trials:{name}", args=[pk])).status_code, 404)
        for name, pk, body in (
            ("subject-withdraw", self.w.subject1.pk, {"reason": "x"}),
            ("case-create", self.w.subject1.pk, {"laterality": "OS", "visit_day": 1}),
            ("case-status", self.w.case1.pk, {"status": "complete"}),
        ):
            self.assertEqual(
                client.post(reverse(f"api:trials:{name}", args=[pk]), body, format="json").status_code, 404
            )


class ListQueryCountTests(TestCase):
    """Every list endpoint runs a constant number of queries, whatever the number of rows."""

    @classmethod
    def setUpTestData(cls):
        cls.w = TrialWorld()

    def grow(self):
        for _ in range(15):
            enrol(coordinator=self.w.coord1, trial=self.w.trial, hospital=self.w.h1)
            enrol(coordinator=self.w.coord2, trial=self.w.trial, hospital=self.w.h2)
        from trials.services import case_create

        for subject in Subject.objects.all():
            if not subject.cases.exists():
                case_create(
                    actor=self.w.coord1 if subject.site.hospital == self.w.h1 else self.w.coord2,
                    subject=subject,
                    laterality="OD",
                    visit_day=0,
                )

    def test_list_endpoints_have_constant_query_counts(self):
        endpoints = [
            (self.w.monitor, reverse("api:trials:trial-list")),
            (self.w.monitor, reverse("api:trials:trial-site-list", args=["dr-trial"])),
            (self.w.monitor, reverse("api:trials:subject-list")),
            (self.w.monitor, reverse("api:trials:case-list")),
            (self.w.coord1, reverse("api:trials:subject-list")),
            (self.w.coord1, reverse("api:trials:case-list")),
        ]
        counts = {}
        for user, url in endpoints:
            client = client_for(user)
            with self.assertNumQueries(client_queries := self._count(client, url)):
                client.get(url)
            counts[(user.email, url)] = client_queries
        self.grow()
        for user, url in endpoints:
            with self.subTest(url=url, user=user.email), self.assertNumQueries(counts[(user.email, url)]):
                response = client_for(user).get(url)
                self.assertEqual(response.status_code, 200)

    def _count(self, client, url):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as ctx:
            client.get(url)
        self.assertLessEqual(len(ctx), 6, url)
        return len(ctx)


@tag("postgres")
class ConcurrentEnrolmentTests(TransactionTestCase):
    """Concurrent enrolments at one site never get the same subject ID (row lock on the site)."""

    def test_parallel_enrolments_get_distinct_pseudonyms(self):
        require_postgresql()
        import threading

        from django.db import connection

        w = TrialWorld()
        coordinators = [w.coord1] + [member(Role.COORDINATOR, w.h1) for _ in range(3)]
        results, errors = [], []
        barrier = threading.Barrier(8)

        def worker(n):
            try:
                barrier.wait(10)
                results.append(enrol(coordinator=coordinators[n % 4], trial=w.trial, hospital=w.h1).pseudonym)
            except Exception as exc:  # collected and asserted below
                errors.append(repr(exc))
            finally:
                connection.close()

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 8)
        self.assertEqual(len(set(results)), 8)
        self.assertEqual(sorted(results), [f"DR01-H01-{n:04d}" for n in range(2, 10)])
