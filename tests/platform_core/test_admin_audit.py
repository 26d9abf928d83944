"""The Django admin writes through the audit trail too, inline rows included, and keeps a trial's fixed
protocol and its sites' hospitals fixed."""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.test import TestCase
from django.urls import reverse

from platform_core.accounts.models import Membership, Role, User
from platform_core.audit.models import AuditEvent
from tests.support.factories import HospitalFactory, TrialWorld, make_trial, member
from trials.models import Trial, TrialSite
from trials.selectors import cases_for, subjects_for


def management_data(response) -> dict[str, str]:
    """The change form's current values, as the browser would post them back (inline management forms too)."""
    data: dict[str, str] = {}
    adminform = response.context["adminform"].form
    for name, field in adminform.fields.items():
        value = adminform.initial.get(name, field.initial)
        if value is None:
            continue
        if isinstance(value, bool):
            if value:
                data[name] = "on"
            continue
        data[name] = str(value.pk if hasattr(value, "pk") else value)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for key, value in formset.management_form.initial.items():
            data[f"{formset.prefix}-{key}"] = str(value)
        for number, form in enumerate(formset.forms):
            data[f"{formset.prefix}-{number}-id"] = str(form.instance.pk)
            for name in form.fields:
                value = form.initial.get(name)
                if value is not None:
                    data[f"{formset.prefix}-{number}-{name}"] = str(getattr(value, "pk", value))
    return data


class AdminInlineAuditTests(TestCase):
    def setUp(self):
        self.admin = User.objects.create_superuser(
            email="root@visus.example", password="x-Admin-2026", full_name="Root"
        )
        self.client.force_login(self.admin)
        self.hospital = HospitalFactory(code="H01")
        self.person = member(Role.COORDINATOR, self.hospital, email="pat@visus.example")

    def test_a_role_granted_through_the_users_inline_is_audited(self):
        url = reverse("admin:accounts_user_change", args=[self.person.pk])
        page = self.client.get(url)
        data = management_data(page)
        prefix = page.context["inline_admin_formsets"][0].formset.prefix
        total = int(data[f"{prefix}-TOTAL_FORMS"])
        data[f"{prefix}-TOTAL_FORMS"] = str(total + 1)
        data[f"{prefix}-{total}-hospital"] = str(self.hospital.pk)
        data[f"{prefix}-{total}-role"] = Role.READER
        data[f"{prefix}-{total}-is_active"] = "on"
        response = self.client.post(url, data)
        self.assertEqual(response.status_code, 302, getattr(response, "context", {}) and response.context["errors"])
        self.assertTrue(Membership.objects.filter(user=self.person, role=Role.READER).exists())
        event = AuditEvent.objects.get(action="membership.create")
        self.assertEqual(event.changes["role"], [None, "reader"])
        self.assertEqual(event.actor, self.admin)
        self.assertEqual(event.hospital_code, "H01")


class TrialAdminTests(TestCase):
    def setUp(self):
        self.w = TrialWorld()
        self.admin = User.objects.create_superuser(
            email="root@visus.example", password="x-Admin-2026", full_name="Root"
        )
        self.client.force_login(self.admin)

    def test_a_recruiting_trials_protocol_and_sites_are_not_editable_in_the_admin(self):
        page = self.client.get(reverse("admin:trials_trial_change", args=[self.w.trial.pk]))
        readonly = set(page.context["adminform"].readonly_fields)
        self.assertTrue({"modalities", "reading_form", "reading_design", "slug", "subject_prefix"} <= readonly)
        self.assertNotIn("title", readonly)
        inline = page.context["inline_admin_formsets"][0]
        self.assertFalse(inline.has_add_permission)
        self.assertFalse(inline.formset.can_delete)
        self.assertEqual(set(inline.readonly_fields), {"hospital", "enrolment_target", "status"})
        self.assertEqual(Trial.objects.get(pk=self.w.trial.pk).modalities, ["fundus"])

    def test_a_sites_hospital_cannot_be_changed_and_a_target_change_is_audited(self):
        site = TrialSite.objects.get(trial=self.w.trial, hospital=self.w.h1)
        url = reverse("admin:trials_trialsite_change", args=[site.pk])
        page = self.client.get(url)
        self.assertEqual(set(page.context["adminform"].readonly_fields), {"trial", "hospital"})
        response = self.client.post(url, {"enrolment_target": "77", "status": site.status, "hospital": self.w.h2.pk})
        self.assertEqual(response.status_code, 302)
        site.refresh_from_db()
        self.assertEqual((site.hospital, site.enrolment_target), (self.w.h1, 77))
        event = AuditEvent.objects.filter(action="trialsite.change").get()
        self.assertEqual(event.changes["enrolment_target"][1], 77)


class AdminScopeTests(TestCase):
    """Staff see in the admin only what their memberships show them on the pages; AI outputs stay blinded."""

    def setUp(self):
        from platform_core.demo import trial_manager_admin_group

        self.w = TrialWorld()
        self.staff = member(Role.TRIAL_MANAGER, self.w.h1, email="staff@visus.example")
        self.staff.is_staff = True
        self.staff.save(update_fields=["is_staff"])
        self.staff.groups.add(trial_manager_admin_group())
        self.other_trial = make_trial(manager=self.w.manager, hospitals=[self.w.h2], slug="h2-only", prefix="HT")
        self.client.force_login(self.staff)

    def changelist(self, name: str) -> list:
        response = self.client.get(reverse(f"admin:{name}_changelist"))
        self.assertEqual(response.status_code, 200, name)
        return list(response.context["cl"].queryset)

    def test_subjects_cases_trials_and_audit_events_are_scoped_to_the_staff_members_hospitals(self):
        self.assertEqual(set(self.changelist("trials_trial")), {self.w.trial})
        self.assertNotIn(self.other_trial, self.changelist("trials_trial"))
        self.assertEqual(self.changelist("trials_subject"), list(subjects_for(self.staff)))
        self.assertEqual(set(self.changelist("trials_case")), set(cases_for(self.staff)))
        events = self.changelist("audit_auditevent")
        self.assertTrue(events)
        self.assertFalse([e for e in events if e.trial_ref == "h2-only"])
        other = self.client.get(reverse("admin:trials_trial_change", args=[self.other_trial.pk]))
        self.assertIn(other.status_code, (302, 404))  # Django's admin redirects a missing object to the index

    def test_staff_add_sites_only_to_trials_they_manage_through_the_audited_service(self):
        url = reverse("admin:trials_trialsite_add")
        page = self.client.get(url)
        self.assertEqual(set(page.context["adminform"].form.fields["trial"].queryset), {self.w.trial})
        h3 = HospitalFactory(code="H03")
        form = {"hospital": h3.pk, "enrolment_target": "9", "status": "active"}
        response = self.client.post(url, {**form, "trial": self.other_trial.pk})
        self.assertEqual(response.status_code, 200)  # refused: not a choice for them
        self.assertFalse(TrialSite.objects.filter(trial=self.other_trial, hospital=h3).exists())
        response = self.client.post(url, {**form, "trial": self.w.trial.pk})
        self.assertEqual(response.status_code, 302, response.context and response.context["adminform"].form.errors)
        site = TrialSite.objects.get(trial=self.w.trial, hospital=h3)
        self.assertTrue(AuditEvent.objects.filter(object_id=str(site.pk), action__startswith="trial_site").exists())
        listing = self.client.get(reverse("admin:trials_subject_changelist")).content.decode()
        self.assertNotIn("P-h2-only", listing)  # the trial filter lists only trials of the rows shown

    def test_a_site_the_service_refuses_comes_back_as_a_message_and_nothing_is_saved(self):
        from trials.services import trial_transition

        trial_transition(actor=self.w.manager, trial=self.w.trial, status="closed", reason="study ended")
        url = reverse("admin:trials_trialsite_add")
        h3 = HospitalFactory(code="H03")
        form = {"trial": self.w.trial.pk, "hospital": h3.pk, "enrolment_target": "9", "status": "active"}
        response = self.client.post(url, form, follow=True)
        self.assertContains(response, "The trial is closed: no sites can be added.")
        self.assertFalse(TrialSite.objects.filter(hospital=h3).exists())

    def test_predictions_are_hidden_from_staff_who_read_the_trial(self):
        from diagnosis.models import InferenceJob, Prediction
        from tests.support.registry import register_small_models

        dr, _ = register_small_models()
        job = InferenceJob.objects.create(case=self.w.case1, model_version=dr, status="succeeded")
        Prediction.objects.create(job=job, case=self.w.case1, model_version=dr, runtime_ms=1.0)
        self.assertEqual(len(self.changelist("diagnosis_prediction")), 1)
        prediction = Prediction.objects.get(job=job)
        prediction.attention_overlay = "predictions/x.png"
        prediction.save(update_fields=["attention_overlay"])
        page = self.client.get(reverse("admin:diagnosis_prediction_change", args=[prediction.pk]))
        self.assertContains(page, reverse("diagnosis:prediction-overlay", args=[prediction.pk]))
        self.assertNotContains(page, "predictions/x.png")  # the private file's path is never shown
        Membership.objects.create(user=self.staff, hospital=self.w.h1, role=Role.READER)
        self.assertEqual(self.changelist("diagnosis_prediction"), [])
        self.assertEqual(self.changelist("diagnosis_inferencejob"), [])
        default_storage.delete(dr.weights.name)


class AdminSignInTests(TestCase):
    """The admin signs in through Visus's login page: audited, locked out and throttled like every sign-in."""

    def setUp(self):
        self.staff = member(Role.TRIAL_MANAGER, HospitalFactory(code="H01"), email="staff@visus.example")
        self.staff.is_staff = True
        self.staff.save(update_fields=["is_staff"])

    def test_admin_login_goes_through_the_audited_login_page(self):
        from tests.support.factories import TEST_PASSWORD

        response = self.client.get("/admin/login/?next=/admin/trials/")
        self.assertRedirects(response, "/accounts/login/?next=%2Fadmin%2Ftrials%2F", fetch_redirect_response=False)
        response = self.client.post(
            "/accounts/login/?next=/admin/", {"username": "staff@visus.example", "password": TEST_PASSWORD}
        )
        self.assertRedirects(response, "/admin/", fetch_redirect_response=False)
        self.assertTrue(AuditEvent.objects.filter(action="login.success", actor=self.staff).exists())
        self.assertEqual(self.client.get("/admin/").status_code, 200)
        self.assertRedirects(self.client.get("/admin/login/?next=https://evil.example/"), "/admin/")

    def test_a_signed_in_person_without_admin_access_is_refused_not_looped(self):
        coordinator = member(Role.COORDINATOR, HospitalFactory(code="H02"), email="coord@visus.example")
        self.client.force_login(coordinator)
        self.assertEqual(self.client.get("/admin/login/?next=/admin/").status_code, 403)
