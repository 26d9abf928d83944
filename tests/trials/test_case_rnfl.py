"""OCT RNFL thickness on a case: recorded by the site's coordinator, audited, checked, and fused."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.test import TestCase
from django.urls import reverse
from rest_framework.test import APIClient

from diagnosis.networks.fusion import RNFL_PLAUSIBLE_UM
from platform_core.audit.models import AuditEvent
from platform_core.errors import ApplicationError
from tests.support.factories import TrialWorld, enrol, make_trial
from tests.support.uploads import attach_photograph
from trials.models import RNFL_RANGE_UM, Case
from trials.services import case_create, case_record_rnfl, case_set_status, subject_withdraw


class RecordRnflServiceTests(TestCase):
    def setUp(self):
        self.w = TrialWorld(modalities=("fundus", "visual_field", "oct"))
        self.case = self.w.case1

    def value(self):
        return Case.objects.get(pk=self.case.pk).oct_rnfl_thickness_um

    def test_records_a_value_with_an_audit_event(self):
        case_record_rnfl(actor=self.w.coord1, case=self.case, thickness_um=82.46)
        self.assertEqual(self.value(), 82.5)  # devices report whole or tenth microns
        event = AuditEvent.objects.filter(action="case.rnfl").get()
        self.assertEqual(event.changes, {"oct_rnfl_thickness_um": [None, 82.5]})
        self.assertEqual(event.actor, self.w.coord1)

    def test_changing_or_clearing_needs_a_reason_and_keeps_the_old_value_in_the_trail(self):
        case_record_rnfl(actor=self.w.coord1, case=self.case, thickness_um=82.5)
        for new in (90.0, None):
            with self.subTest(new=new), self.assertRaisesMessage(ValidationError, "Give a reason"):
                case_record_rnfl(actor=self.w.coord1, case=self.case, thickness_um=new)
        self.assertEqual(self.value(), 82.5)
        case_record_rnfl(actor=self.w.coord1, case=self.case, thickness_um=90.0, reason="transcription error")
        case_record_rnfl(actor=self.w.coord1, case=self.case, thickness_um=None, reason="scan failed quality")
        self.assertIsNone(self.value())
        changes = [e.changes["oct_rnfl_thickness_um"] for e in AuditEvent.objects.filter(action="case.rnfl")]
        self.assertEqual(changes, [[None, 82.5], [82.5, 90.0], [90.0, None]])
        with self.assertRaisesMessage(ApplicationError, "already the recorded"):
            case_record_rnfl(actor=self.w.coord1, case=self.case, thickness_um=None, reason="again")

    def test_implausible_values_are_refused_and_change_nothing(self):
        for bad in (5.0, 250.0, float("nan"), float("inf")):
            with self.subTest(bad=bad), self.assertRaisesMessage(ValidationError, "between 20 and 200 um"):
                case_record_rnfl(actor=self.w.coord1, case=self.case, thickness_um=bad)
        self.assertIsNone(self.value())
        self.assertFalse(AuditEvent.objects.filter(action="case.rnfl").exists())

    def test_the_plausible_range_is_the_one_fusion_accepts(self):
        self.assertEqual(tuple(RNFL_RANGE_UM), tuple(RNFL_PLAUSIBLE_UM))

    def test_refused_for_other_people_closed_cases_withdrawn_subjects_and_trials_without_oct(self):
        for actor in (self.w.coord2, self.w.reader, self.w.manager, self.w.outsider):
            with self.subTest(actor=actor.email), self.assertRaisesMessage(ApplicationError, "Only a coordinator"):
                case_record_rnfl(actor=actor, case=self.case, thickness_um=80.0)
        attach_photograph(self.case, self.w.coord1)  # an empty case cannot be completed
        case_set_status(actor=self.w.coord1, case=self.case, status="complete")
        with self.assertRaisesMessage(ApplicationError, "reopen it"):
            case_record_rnfl(actor=self.w.coord1, case=self.case, thickness_um=80.0)
        subject_withdraw(actor=self.w.coord2, subject=self.w.subject2, reason="moved away")
        with self.assertRaisesMessage(ApplicationError, "withdrawn"):
            case_record_rnfl(actor=self.w.coord2, case=self.w.case2, thickness_um=80.0)
        # A second trial at the same site, without OCT.
        fundus_only = make_trial(
            manager=self.w.manager, hospitals=[self.w.h1], modalities=["fundus"], slug="no-oct", prefix="NO"
        )
        subject = enrol(coordinator=self.w.coord1, trial=fundus_only, hospital=self.w.h1)
        case = case_create(actor=self.w.coord1, subject=subject, laterality="OD", visit_day=0)
        with self.assertRaisesMessage(ApplicationError, "does not collect OCT"):
            case_record_rnfl(actor=self.w.coord1, case=case, thickness_um=80.0)
        self.assertFalse(AuditEvent.objects.filter(action="case.rnfl").exists())


class RnflPageAndApiTests(TestCase):
    def setUp(self):
        self.w = TrialWorld(modalities=("fundus", "oct"))
        self.url = reverse("trials:case-detail", args=[self.w.case1.pk])

    def test_coordinator_records_it_on_the_case_page_and_sees_errors(self):
        self.client.force_login(self.w.coord1)
        page = self.client.get(self.url)
        self.assertContains(page, "not recorded")
        self.assertContains(page, "Save RNFL thickness")
        post = reverse("trials:case-rnfl", args=[self.w.case1.pk])
        page = self.client.post(post, {"thickness_um": "300", "reason": ""}, follow=True)
        self.assertContains(page, "between 20 and 200 um")
        page = self.client.post(post, {"thickness_um": "76.0", "reason": ""}, follow=True)
        self.assertContains(page, "RNFL thickness saved.")
        self.assertContains(page, "76.0 µm")
        # It joins the eye's fused glaucoma evidence even before any network has run.
        self.assertEqual(page.context["fused_glaucoma"]["used"], ["oct_rnfl"])
        self.assertGreater(page.context["fused_glaucoma"]["components"][0]["log_odds"], 0)  # thin: towards glaucoma
        self.assertContains(page, "(uncalibrated)")

    def test_readers_see_no_form_and_trials_without_oct_show_no_section(self):
        self.client.force_login(self.w.manager)
        page = self.client.get(self.url)
        self.assertContains(page, 'data-testid="oct-measurements"')
        self.assertNotContains(page, "Save RNFL thickness")
        self.client.force_login(self.w.coord1)
        self.w.trial.modalities = ["fundus"]
        self.w.trial.save(update_fields=["modalities"])
        self.assertNotContains(self.client.get(self.url), 'data-testid="oct-measurements"')

    def test_api_records_and_returns_it_and_refuses_bad_input_in_the_error_envelope(self):
        api = APIClient()
        api.force_authenticate(self.w.coord1)
        url = reverse("api:trials:case-rnfl", args=[self.w.case1.pk])
        response = api.post(url, {"thickness_um": 88.0}, format="json")
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["oct_rnfl_thickness_um"], 88.0)
        detail = api.get(reverse("api:trials:case-detail", args=[self.w.case1.pk])).json()
        self.assertEqual(detail["oct_rnfl_thickness_um"], 88.0)
        response = api.post(url, {"thickness_um": 95.0}, format="json")
        self.assertEqual(response.status_code, 400)
        self.assertIn("reason", response.json()["error"]["fields"])
        response = api.post(url, {"thickness_um": "thick"}, format="json")
        self.assertEqual(response.status_code, 400)
        api.force_authenticate(self.w.reader)
        self.assertEqual(api.post(url, {"thickness_um": 70.0}, format="json").status_code, 403)
        api.force_authenticate(self.w.coord2)
        self.assertEqual(api.post(url, {"thickness_um": 70.0}, format="json").status_code, 404)
        self.assertEqual(Case.objects.get(pk=self.w.case1.pk).oct_rnfl_thickness_um, 88.0)
