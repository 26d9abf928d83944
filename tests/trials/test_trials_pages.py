from django.test import TestCase
from django.urls import reverse

from platform_core.audit.models import AuditEvent
from tests.support.factories import TrialWorld
from tests.support.uploads import attach_photograph
from trials.models import Subject, Trial


class TrialPagesTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.w = TrialWorld()

    def test_manager_creates_a_trial_through_the_page(self):
        self.client.force_login(self.w.manager)
        response = self.client.post(
            reverse("trials:trial-create"),
            {
                "protocol_number": "GL-2",
                "title": "Glaucoma study",
                "slug": "gl-two",
                "subject_prefix": "gl02",
                "modalities": ["visual_field", "fundus"],
                "reading_form": ["glaucoma", "confidence"],
                "readers_per_case": 2,
                "reading_design": "unaided_then_aided",
                "washout_days": 14,
                "reference_rule": "majority",
                "inclusion_criteria": "Adult\nGlaucoma suspect",
                "exclusion_criteria": "",
                "vf_max_fixation_losses": 20,
                "vf_max_false_positives": 15,
                "vf_max_false_negatives": 33,
            },
        )
        self.assertRedirects(response, reverse("trials:trial-detail", args=["gl-two"]))
        trial = Trial.objects.get(slug="gl-two")
        self.assertEqual(trial.subject_prefix, "GL02")
        self.assertEqual(trial.inclusion_criteria, ["Adult", "Glaucoma suspect"])

    def test_trial_form_shows_service_errors(self):
        self.client.force_login(self.w.manager)
        response = self.client.post(
            reverse("trials:trial-create"),
            {
                "protocol_number": "X",
                "title": "X",
                "slug": "xx",
                "subject_prefix": "XX",
                "modalities": ["fundus"],
                "reading_form": ["icdr_grade"],
                "readers_per_case": 1,
                "reading_design": "unaided_then_aided",
                "washout_days": 0,
                "reference_rule": "majority",
                "vf_max_fixation_losses": 20,
                "vf_max_false_positives": 15,
                "vf_max_false_negatives": 33,
            },
        )
        self.assertContains(response, "washout of at least one day")
        self.assertFalse(Trial.objects.filter(slug="xx").exists())

    def test_coordinator_cannot_open_the_trial_creation_page(self):
        self.client.force_login(self.w.coord1)
        self.assertEqual(self.client.get(reverse("trials:trial-create")).status_code, 403)
        self.assertEqual(self.client.get(reverse("trials:trial-edit", args=["dr-trial"])).status_code, 403)

    def test_manager_and_monitor_see_the_accrual_chart_but_coordinator_does_not(self):
        for user, visible in ((self.w.manager, True), (self.w.monitor, True), (self.w.coord1, False)):
            self.client.force_login(user)
            response = self.client.get(reverse("trials:trial-detail", args=["dr-trial"]))
            self.assertEqual(response.status_code, 200)
            if visible:
                self.assertContains(response, 'data-testid="accrual-chart"')
                self.assertContains(response, "/static/vendor/plotly/plotly.min.js")
                self.assertContains(response, "H02 enrolled (1)")
            else:
                self.assertNotContains(response, "accrual-chart")

    def test_closing_needs_a_reason_and_shows_the_error(self):
        self.client.force_login(self.w.manager)
        response = self.client.post(
            reverse("trials:trial-transition", args=["dr-trial"]), {"status": "closed"}, follow=True
        )
        self.assertContains(response, "Give a reason for closing the trial.")
        self.assertEqual(Trial.objects.get(slug="dr-trial").status, "recruiting")


class EnrolPageTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.w = TrialWorld()

    def setUp(self):
        self.client.force_login(self.w.coord1)
        self.url = reverse("trials:subject-enrol", args=["dr-trial"])

    def form_data(self, **overrides):
        page = self.client.get(self.url)
        token = page.context["form"].initial["submission_token"]
        data = {
            "submission_token": token,
            "site": page.context["form"].fields["site"].queryset.get().pk,
            "inclusion_0": "yes",
            "inclusion_1": "yes",
            "exclusion_0": "no",
            "consent_date": "2026-03-01",
            "consent_form_version": "v3",
            "sex": "male",
            "age": 92,
            "diabetes_type": "type1",
            "diabetes_duration_years": 30,
        }
        data.update(overrides)
        return data

    def test_enrolment_page_shows_the_checklist(self):
        response = self.client.get(self.url)
        self.assertContains(response, "Age 18 or over")
        self.assertContains(response, "Previous vitreoretinal surgery")

    def test_coordinator_enrols_and_sees_the_pseudonym(self):
        response = self.client.post(self.url, self.form_data(), follow=True)
        self.assertContains(response, "Subject enrolled: DR01-H01-0002")
        self.assertEqual(Subject.objects.get(pseudonym="DR01-H01-0002").age, "90+")

    def test_refusals_are_shown_and_nothing_is_saved(self):
        for overrides, message in (
            ({"consent_date": ""}, "Record the date the subject gave consent."),
            ({"exclusion_0": "yes"}, "Previous vitreoretinal surgery</a>: Exclusion criterion applies"),
            ({"inclusion_1": ""}, "Diabetes type 1 or 2</a>: Inclusion criterion not answered."),
            ({"consent_form_version": ""}, "Record the version of the consent form signed."),
        ):
            with self.subTest(message=message):
                before = (Subject.objects.count(), AuditEvent.objects.count())
                response = self.client.post(self.url, self.form_data(**overrides))
                self.assertContains(response, message)
                self.assertEqual(before, (Subject.objects.count(), AuditEvent.objects.count()))

    def test_double_submit_of_the_same_form_enrols_once(self):
        data = self.form_data()
        self.client.post(self.url, data)
        response = self.client.post(self.url, data)
        self.assertContains(response, "This enrolment was already submitted: subject DR01-H01-0002")
        self.assertEqual(Subject.objects.filter(site__hospital=self.w.h1).count(), 2)

    def test_site_of_another_hospital_cannot_be_chosen(self):
        from trials.models import TrialSite

        other = TrialSite.objects.get(trial=self.w.trial, hospital=self.w.h2)
        response = self.client.post(self.url, self.form_data(site=other.pk))
        self.assertContains(response, "Select a valid choice")

    def test_monitor_has_no_enrolment_page(self):
        self.client.force_login(self.w.monitor)
        self.assertEqual(self.client.get(self.url).status_code, 403)


class SubjectPagesTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.w = TrialWorld()

    def setUp(self):
        self.client.force_login(self.w.coord1)

    def test_subject_page_adds_cases_and_withdraws(self):
        url = reverse("trials:subject-detail", args=["dr-trial", "DR01-H01-0001"])
        self.assertContains(self.client.get(url), "DR01-H01-0001")
        response = self.client.post(
            reverse("trials:case-add", args=["dr-trial", "DR01-H01-0001"]),
            {"laterality": "OS", "visit_day": 7},
            follow=True,
        )
        self.assertContains(response, "Case OS day 7 added.")
        response = self.client.post(
            reverse("trials:case-add", args=["dr-trial", "DR01-H01-0001"]),
            {"laterality": "OS", "visit_day": 7},
            follow=True,
        )
        self.assertContains(response, "already has a case for OS on day 7")
        response = self.client.post(
            reverse("trials:subject-withdraw", args=["dr-trial", "DR01-H01-0001"]),
            {"reason": "moved away"},
            follow=True,
        )
        self.assertContains(response, "withdrawn; their data is kept")
        self.assertContains(response, "moved away")

    def test_case_status_page(self):
        url = reverse("trials:case-status", args=[self.w.case1.pk])
        response = self.client.post(url, {"status": "excluded", "reason": ""}, follow=True)
        self.assertContains(response, "Give the reason for excluding the case.")
        response = self.client.post(url, {"status": "complete"}, follow=True)
        self.assertContains(response, "The case has no files, so it cannot be completed")
        attach_photograph(self.w.case1, self.w.coord1)
        response = self.client.post(url, {"status": "complete"}, follow=True)
        self.assertContains(response, "Case status saved.")

    def test_statistician_reads_but_cannot_write(self):
        self.client.force_login(self.w.statistician)
        url = reverse("trials:subject-detail", args=["dr-trial", "DR01-H01-0001"])
        response = self.client.get(url)
        self.assertContains(response, "DR01-H01-0001")
        self.assertNotContains(response, "Withdraw subject")
        self.assertEqual(
            self.client.post(
                reverse("trials:subject-withdraw", args=["dr-trial", "DR01-H01-0001"]), {"reason": "x"}
            ).status_code,
            403,
        )

    def test_reader_sees_the_trial_but_no_subjects(self):
        self.client.force_login(self.w.reader)
        self.assertEqual(self.client.get(reverse("trials:trial-detail", args=["dr-trial"])).status_code, 200)
        self.assertEqual(self.client.get(reverse("trials:subject-list", args=["dr-trial"])).status_code, 403)


class SiteEditTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.w = TrialWorld()

    def test_manager_changes_a_site_target_with_a_reason(self):
        from trials.models import TrialSite

        site = TrialSite.objects.get(trial=self.w.trial, hospital=self.w.h2)
        self.client.force_login(self.w.manager)
        url = reverse("trials:site-edit", args=["dr-trial", site.pk])
        response = self.client.post(url, {"enrolment_target": 25, "status": "on_hold", "reason": ""})
        self.assertContains(response, "This field is required")
        response = self.client.post(url, {"enrolment_target": 25, "status": "on_hold", "reason": "ethics amendment"})
        self.assertRedirects(response, reverse("trials:trial-detail", args=["dr-trial"]))
        site.refresh_from_db()
        self.assertEqual((site.enrolment_target, site.status), (25, "on_hold"))
        event = AuditEvent.objects.get(action="trial_site.update")
        self.assertEqual(event.changes, {"enrolment_target": [10, 25], "status": ["active", "on_hold"]})

    def test_site_update_through_the_api_and_coordinator_refused(self):
        from rest_framework.test import APIClient

        from trials.models import TrialSite

        site = TrialSite.objects.get(trial=self.w.trial, hospital=self.w.h1)
        url = reverse("api:trials:trial-site-update", args=["dr-trial", site.pk])
        client = APIClient()
        client.force_authenticate(self.w.coord1)
        self.assertEqual(client.post(url, {"enrolment_target": 99, "reason": "x"}, format="json").status_code, 403)
        client.force_authenticate(self.w.manager)
        response = client.post(url, {"enrolment_target": 99, "reason": "more funding"}, format="json")
        self.assertEqual(response.json()["enrolment_target"], 99)


class TrialAuditVisibilityTests(TestCase):
    def test_monitor_sees_trial_wide_events_and_an_outsider_sees_none(self):
        from rest_framework.test import APIClient

        w = TrialWorld()
        client = APIClient()
        client.force_authenticate(w.monitor)  # monitor at H01 only, but oversees the whole trial
        actions = {
            e["action"] for e in client.get(reverse("api:core:audit-event-list"), {"page_size": 200}).json()["results"]
        }
        self.assertIn("trial.transition", actions)
        hospitals = {e["hospital_code"] for e in client.get(reverse("api:core:audit-event-list")).json()["results"]}
        self.assertIn("H02", hospitals)
        client.force_authenticate(w.outsider)
        self.assertEqual(client.get(reverse("api:core:audit-event-list")).status_code, 403)
        self.client.force_login(w.monitor)
        self.assertContains(self.client.get(reverse("audit:event-list")), "trial.transition")
