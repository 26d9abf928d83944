"""Trials reaches the apps above it only through ``trials.hooks``, which they fill from ``AppConfig.ready()``."""

from __future__ import annotations

from unittest import mock

from django.test import TestCase
from django.urls import reverse

from diagnosis.selectors import case_inference_context
from diagnosis.services import inference_jobs_queue
from platform_core.audit.models import AuditEvent
from tests.support.factories import TrialWorld
from tests.support.uploads import attach_photograph
from trials import hooks
from trials.models import Case
from trials.services import case_set_status


class CaseCompletedHookTests(TestCase):
    def setUp(self):
        self.w = TrialWorld()
        attach_photograph(self.w.case1, self.w.coord1)  # an empty case cannot be completed

    def test_diagnosis_registers_inference_for_completed_cases_and_its_case_page_panel(self):
        self.assertIn(inference_jobs_queue, hooks._case_completed)
        panels = {panel.name: panel for panel in hooks.case_page_panels()}
        self.assertEqual(panels["ai"].template, "diagnosis/case_inference.html")
        self.assertIs(panels["ai"].context, case_inference_context)

    def test_completing_a_case_runs_each_callback_once_with_the_case(self):
        seen = []
        with mock.patch.object(hooks, "_case_completed", []):
            hooks.on_case_completed(lambda *, case: seen.append(case.pk))
            case_set_status(actor=self.w.coord1, case=self.w.case1, status="complete")
            case_set_status(actor=self.w.coord1, case=self.w.case1, status="open", reason="a file was missing")
        self.assertEqual(seen, [self.w.case1.pk])

    def test_a_failing_callback_rolls_the_completion_back(self):
        def refuse(*, case):
            raise RuntimeError("diagnosis refused")

        with mock.patch.object(hooks, "_case_completed", [refuse]), self.assertRaisesMessage(RuntimeError, "refused"):
            case_set_status(actor=self.w.coord1, case=self.w.case1, status="complete")
        self.assertEqual(Case.objects.get(pk=self.w.case1.pk).status, "open")
        self.assertFalse(AuditEvent.objects.filter(action="case.status").exists())

    def test_registering_twice_keeps_one(self):
        def callback(*, case):
            return None

        with mock.patch.object(hooks, "_case_completed", []):
            hooks.on_case_completed(callback)
            hooks.on_case_completed(callback)
            self.assertEqual(hooks._case_completed, [callback])


class CasePagePanelTests(TestCase):
    def setUp(self):
        self.w = TrialWorld()

    def test_the_case_page_includes_each_registered_panel_with_its_context(self):
        panel = hooks.CasePagePanel(
            name="test", template="includes/form_errors.html", context=lambda *, user, case: {"panel_case": case}
        )
        self.client.force_login(self.w.coord1)
        url = reverse("trials:case-detail", args=[self.w.case1.pk])
        with mock.patch.object(hooks, "_case_page_panels", {"test": panel}):
            response = self.client.get(url)
        self.assertEqual(response.context["case_panel_templates"], ["includes/form_errors.html"])
        self.assertEqual(response.context["panel_case"], self.w.case1)
        self.assertNotContains(response, 'data-testid="inference"')
        self.assertContains(self.client.get(url), 'data-testid="inference"')
