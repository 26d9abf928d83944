"""Trial lifecycle (issue 10, item 8): each move explains its effect and asks for confirmation on its own page;
slug and subject prefix are fixed once recruiting; readers and statisticians get a trial page for their role;
protocol pages show labels, not keys."""

from __future__ import annotations

from django.test import TestCase
from django.urls import reverse

from platform_core.audit.models import AuditEvent
from platform_core.errors import ApplicationError
from tests.support.factories import TrialWorld, make_trial
from trials.forms import TrialForm
from trials.models import Trial
from trials.services import trial_update


class TransitionConfirmationTests(TestCase):
    def setUp(self):
        self.w = TrialWorld()
        self.client.force_login(self.w.manager)
        self.url = reverse("trials:trial-transition", args=["dr-trial"])

    def test_the_trial_page_links_to_a_confirmation_not_a_one_click_move(self):
        page = self.client.get(reverse("trials:trial-detail", args=["dr-trial"]))
        self.assertContains(page, f'href="{self.url}?status=reading"')
        self.assertContains(page, f'href="{self.url}?status=closed"')
        self.assertNotContains(page, f'action="{self.url}"')

    def test_the_confirmation_page_explains_the_effect_and_changes_nothing(self):
        page = self.client.get(self.url, {"status": "reading"})
        self.assertContains(page, "Move P-dr-trial to reading?")
        self.assertContains(page, "Enrolment stops: no new subjects.")
        self.assertContains(page, "Confirm: move to reading")
        closing = self.client.get(self.url, {"status": "closed"})
        self.assertContains(closing, "This is final: nothing can reopen the trial.")
        self.assertContains(closing, "Reason for closing")
        self.assertEqual(Trial.objects.get(slug="dr-trial").status, "recruiting")

    def test_confirming_moves_the_trial_and_audits_it(self):
        response = self.client.post(self.url, {"status": "closed", "reason": "Target reached"})
        self.assertRedirects(response, reverse("trials:trial-detail", args=["dr-trial"]))
        self.assertEqual(Trial.objects.get(slug="dr-trial").status, "closed")
        event = AuditEvent.objects.filter(action="trial.transition").latest("seq")
        self.assertEqual((event.changes["status"], event.reason), (["recruiting", "closed"], "Target reached"))

    def test_a_double_submit_of_the_confirmation_moves_the_trial_once(self):
        self.client.post(self.url, {"status": "reading"})
        page = self.client.post(self.url, {"status": "reading"}, follow=True)
        self.assertContains(page, "Choose one of the moves offered on the trial page.")
        self.assertEqual(AuditEvent.objects.filter(action="trial.transition", changes__status__1="reading").count(), 1)

    def test_a_move_not_offered_is_refused_with_a_message(self):
        page = self.client.get(self.url, {"status": "draft"}, follow=True)
        self.assertContains(page, "Choose one of the moves offered on the trial page.")
        page = self.client.post(self.url, {"status": "draft"}, follow=True)
        self.assertContains(page, "Choose one of the moves offered on the trial page.")
        self.assertEqual(Trial.objects.get(slug="dr-trial").status, "recruiting")

    def test_a_refusal_of_the_service_shows_on_the_confirmation_page(self):
        draft = make_trial(manager=self.w.manager, slug="empty", prefix="EM", recruiting=False)
        page = self.client.post(reverse("trials:trial-transition", args=[draft.slug]), {"status": "recruiting"})
        self.assertContains(page, "Add at least one active site before recruiting starts.")
        self.assertEqual(Trial.objects.get(slug="empty").status, "draft")

    def test_only_the_trials_managers_reach_the_confirmation(self):
        for user in (self.w.monitor, self.w.coord1, self.w.reader):
            self.client.force_login(user)
            self.assertEqual(self.client.get(self.url, {"status": "reading"}).status_code, 403)


class FixedOnceRecruitingTests(TestCase):
    def setUp(self):
        self.w = TrialWorld()

    def test_the_service_refuses_a_new_slug_or_subject_prefix(self):
        for field, value in (("slug", "renamed"), ("subject_prefix", "XX99")):
            with self.assertRaisesMessage(ApplicationError, field):
                trial_update(actor=self.w.manager, trial=self.w.trial, reason="typo", **{field: value})
        trial = Trial.objects.get(pk=self.w.trial.pk)
        self.assertEqual((trial.slug, trial.subject_prefix), ("dr-trial", "DR01"))

    def test_the_form_fixes_them_and_a_forged_post_changes_nothing(self):
        form = TrialForm(trial=self.w.trial)
        self.assertTrue(form.fields["slug"].disabled)
        self.assertTrue(form.fields["subject_prefix"].disabled)
        self.assertFalse(form.fields["title"].disabled)
        self.client.force_login(self.w.manager)
        url = reverse("trials:trial-edit", args=["dr-trial"])
        page = self.client.get(url)
        self.assertContains(page, "Fixed once the trial left draft.")
        form = TrialForm(trial=self.w.trial)
        data = {name: form[name].value() for name in form.fields}
        data.update({"slug": "renamed", "subject_prefix": "XX99", "title": "New title", "reason": "Sponsor rename"})
        data = {k: v for k, v in data.items() if v is not None}
        response = self.client.post(url, data)
        self.assertEqual(response.status_code, 302)
        trial = Trial.objects.get(pk=self.w.trial.pk)
        self.assertEqual((trial.slug, trial.subject_prefix, trial.title), ("dr-trial", "DR01", "New title"))

    def test_a_draft_keeps_them_editable(self):
        draft = make_trial(manager=self.w.manager, slug="draft-one", prefix="DD", recruiting=False)
        self.assertFalse(TrialForm(trial=draft).fields["slug"].disabled)
        trial_update(actor=self.w.manager, trial=draft, slug="draft-two", subject_prefix="DE")
        self.assertTrue(Trial.objects.filter(slug="draft-two", subject_prefix="DE").exists())


class RolePagesTests(TestCase):
    def setUp(self):
        self.w = TrialWorld(modalities=("fundus", "visual_field"))
        self.url = reverse("trials:trial-detail", args=["dr-trial"])

    def test_a_reader_sees_their_worklist_and_nothing_of_sites(self):
        self.client.force_login(self.w.reader)
        page = self.client.get(self.url)
        self.assertContains(page, 'data-testid="worklist-link"')
        self.assertContains(page, "To keep your reads blind")
        self.assertNotContains(page, "No sites yet.")
        self.assertNotContains(page, 'data-testid="sites"')
        for hidden in ("exports-link", "monitoring-link", "queries-link", "accrual-chart"):
            self.assertNotContains(page, hidden)

    def test_a_statistician_sees_exports_and_reading_progress(self):
        self.client.force_login(self.w.statistician)
        page = self.client.get(self.url)
        self.assertContains(page, 'data-testid="exports-link"')
        self.assertContains(page, reverse("reading:manage", args=["dr-trial"]))
        self.assertNotContains(page, "worklist-link")

    def test_monitors_see_completeness_and_queries_coordinators_queries(self):
        self.client.force_login(self.w.monitor)
        page = self.client.get(self.url)
        self.assertContains(page, 'data-testid="monitoring-link"')
        self.assertContains(page, 'data-testid="queries-link"')
        self.client.force_login(self.w.coord1)
        page = self.client.get(self.url)
        self.assertNotContains(page, "monitoring-link")
        self.assertContains(page, 'data-testid="queries-link"')

    def test_protocol_and_files_show_labels_not_keys(self):
        self.client.force_login(self.w.manager)
        page = self.client.get(self.url)
        self.assertContains(page, "Fundus photograph, Visual field")
        self.assertContains(page, "ICDR diabetic retinopathy grade, Referable diabetic retinopathy")
        for key in ("visual_field", "icdr_grade", "referable_dr"):
            self.assertNotContains(page, f">{key}", msg_prefix=key)
            self.assertNotContains(page, f", {key}", msg_prefix=key)
        trial_list = self.client.get(reverse("trials:trial-list"))
        self.assertContains(trial_list, "<td>Fundus photograph, Visual field</td>", html=True)
