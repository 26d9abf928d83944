"""The Django admin writes only through the audited services: every add and change page calls one, refusals
come back as messages with nothing saved, and rows the services own are read-only with actions that ask for
the reason the service needs."""

from __future__ import annotations

import io
import os
from unittest import mock

from django.contrib.auth.models import Group, Permission
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone

from platform_core.accounts.models import Hospital, Membership, Role, User
from platform_core.accounts.services import hospital_create
from platform_core.accounts.staff_groups import TRIAL_MANAGERS
from platform_core.audit.models import AuditEvent
from platform_core.audit.selectors import audit_events_for
from tests.support.factories import TEST_PASSWORD, HospitalFactory, TrialWorld, make_trial, member
from trials.models import Trial, TrialSite
from trials.selectors import cases_for, subjects_for

NEW_PASSWORD = "a-Fresh-pass-2026"


def change_data(response) -> dict[str, str]:
    """The change form's current values, as the browser would post them back (inline management forms too)."""
    data: dict[str, str] = {}
    adminform = response.context["adminform"].form
    for name, field in adminform.fields.items():
        value = adminform.initial.get(name, field.initial)
        if value is None or getattr(field, "disabled", False):
            continue
        if isinstance(value, bool):
            if value:
                data[name] = "on"
            continue
        if isinstance(value, list | tuple) and name in ("groups", "permissions"):
            for item in value:
                data.setdefault(name, [])
                data[name].append(str(getattr(item, "pk", item)))  # type: ignore[union-attr]
            continue
        if isinstance(value, list | dict):
            import json

            data[name] = json.dumps(value)
            continue
        data[name] = str(value.pk if hasattr(value, "pk") else value)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for key, value in formset.management_form.initial.items():
            data[f"{formset.prefix}-{key}"] = str(value)
        for number, form in enumerate(formset.forms):
            data[f"{formset.prefix}-{number}-id"] = str(form.instance.pk)
    return data


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


class SuperuserAdminTestCase(TestCase):
    def setUp(self):
        self.root = User.objects.create_superuser(email="root@visus.example", password=TEST_PASSWORD, full_name="Root")
        self.client.force_login(self.root)


class UserAdminTests(SuperuserAdminTestCase):
    def setUp(self):
        super().setUp()
        self.hospital = HospitalFactory(code="H01")
        self.person = member(Role.COORDINATOR, self.hospital, email="pat@visus.example")

    def test_adding_a_user_goes_through_user_create_and_records_no_password(self):
        response = self.client.post(
            reverse("admin:accounts_user_add"),
            {
                "email": "New@Visus.example",
                "full_name": "New Person",
                "password1": NEW_PASSWORD,
                "password2": NEW_PASSWORD,
            },
        )
        self.assertEqual(response.status_code, 302)
        user = User.objects.get(email="new@visus.example")
        self.assertTrue(user.check_password(NEW_PASSWORD))
        event = AuditEvent.objects.get(action="user.create", object_id=str(user.pk))
        self.assertEqual(event.actor, self.root)
        self.assertEqual(event.changes["email"], [None, "new@visus.example"])
        self.assertNotIn(NEW_PASSWORD, str(event.changes))
        self.assertFalse(AuditEvent.objects.filter(action="user.change").exists())

    def test_an_account_change_needs_a_reason_and_records_the_named_fields_and_groups(self):
        url = reverse("admin:accounts_user_change", args=[self.person.pk])
        data = change_data(self.client.get(url))
        group = Group.objects.get(name=TRIAL_MANAGERS)
        data.update({"is_staff": "on", "groups": [str(group.pk)]})
        response = self.client.post(url, data)
        self.assertEqual(response.status_code, 200)
        self.assertIn("reason", response.context["adminform"].form.errors)
        self.person.refresh_from_db()
        self.assertFalse(self.person.is_staff)
        response = self.client.post(url, {**data, "reason": "runs the admin for H01"})
        self.assertEqual(response.status_code, 302)
        self.person.refresh_from_db()
        self.assertTrue(self.person.is_staff)
        self.assertEqual(list(self.person.groups.all()), [group])
        event = AuditEvent.objects.get(action="user.update")
        self.assertEqual(event.changes, {"is_staff": [False, True], "groups": [[], [TRIAL_MANAGERS]]})
        self.assertEqual((event.actor, event.reason), (self.root, "runs the admin for H01"))

    def test_a_membership_row_posted_with_the_users_page_is_not_saved(self):
        old_name = self.person.full_name
        url = reverse("admin:accounts_user_change", args=[self.person.pk])
        page = self.client.get(url)
        data = change_data(page)
        prefix = page.context["inline_admin_formsets"][0].formset.prefix
        total = int(data[f"{prefix}-TOTAL_FORMS"])
        data.update({f"{prefix}-TOTAL_FORMS": str(total + 1), f"{prefix}-{total}-hospital": str(self.hospital.pk)})
        data.update({f"{prefix}-{total}-role": Role.READER, f"{prefix}-{total}-is_active": "on"})
        data.update({f"{prefix}-0-role": Role.MONITOR, f"{prefix}-0-DELETE": "on", "full_name": "Pat P"})
        response = self.client.post(url, {**data, "reason": "name spelt out"})
        self.assertEqual(response.status_code, 302)
        memberships = list(Membership.objects.filter(user=self.person).values_list("role", "is_active"))
        self.assertEqual(memberships, [(Role.COORDINATOR, True)])  # granted and revoked on their own pages only
        event = AuditEvent.objects.get(action="user.update")
        self.assertEqual(event.changes, {"full_name": [old_name, "Pat P"]})
        self.assertFalse(AuditEvent.objects.filter(action__startswith="membership.").exists())

    def test_the_lock_fields_are_read_only_on_the_change_page(self):
        self.person.locked_until = timezone.now() + timezone.timedelta(minutes=10)
        self.person.failed_login_count = 5
        self.person.save()
        url = reverse("admin:accounts_user_change", args=[self.person.pk])
        page = self.client.get(url)
        self.assertTrue(
            {"locked_until", "failed_login_count", "email"} <= set(page.context["adminform"].readonly_fields)
        )
        data = change_data(page)
        self.client.post(url, {**data, "locked_until_0": "", "locked_until_1": "", "failed_login_count": "0"})
        self.person.refresh_from_db()
        self.assertTrue(self.person.is_locked)
        self.assertEqual(self.person.failed_login_count, 5)

    def test_unlocking_is_an_action_that_asks_for_a_reason_and_resets_the_count(self):
        self.person.locked_until = timezone.now() + timezone.timedelta(minutes=10)
        self.person.failed_login_count = 5
        self.person.save()
        url = reverse("admin:accounts_user_changelist")
        action = {"action": "unlock_the_selected_accounts", "_selected_action": [str(self.person.pk)]}
        page = self.client.post(url, action)
        self.assertEqual(page.status_code, 200)
        self.assertContains(page, "Unlock the selected accounts")
        self.client.post(url, {**action, "apply": "1", "reason": "  "})
        self.person.refresh_from_db()
        self.assertTrue(self.person.is_locked)
        response = self.client.post(url, {**action, "apply": "1", "reason": "called the help desk"})
        self.assertEqual(response.status_code, 302)
        self.person.refresh_from_db()
        self.assertEqual((self.person.locked_until, self.person.failed_login_count), (None, 0))
        event = AuditEvent.objects.get(action="user.unlock")
        self.assertEqual((event.actor, event.reason), (self.root, "called the help desk"))

    def test_an_administrator_cannot_remove_their_own_access(self):
        url = reverse("admin:accounts_user_change", args=[self.root.pk])
        data = change_data(self.client.get(url))
        data.pop("is_superuser")
        response = self.client.post(url, {**data, "reason": "oops"}, follow=True)
        self.assertIn("You cannot change your own access; ask another administrator.", messages_of(response))
        self.root.refresh_from_db()
        self.assertTrue(self.root.is_superuser)
        self.assertFalse(AuditEvent.objects.filter(action="user.update").exists())

    def test_setting_another_persons_password_is_audited_without_the_password(self):
        url = reverse("admin:accounts_user_password_change", args=[self.person.pk])
        self.assertEqual(self.client.get(url).status_code, 200)
        refused = self.client.post(url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "reason": ""})
        self.assertEqual(refused.status_code, 200)
        weak = self.client.post(url, {"password1": "abc", "password2": "abc", "reason": "forgot it"})
        self.assertTrue(weak.context["form"].errors["password1"])
        self.person.refresh_from_db()
        self.assertTrue(self.person.check_password(TEST_PASSWORD))
        self.assertFalse(AuditEvent.objects.filter(action="user.password_set").exists())
        response = self.client.post(url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "reason": "forgot it"})
        self.assertRedirects(response, reverse("admin:accounts_user_change", args=[self.person.pk]))
        self.person.refresh_from_db()
        self.assertTrue(self.person.check_password(NEW_PASSWORD))
        event = AuditEvent.objects.get(action="user.password_set")
        self.assertEqual((event.actor, event.reason, event.changes), (self.root, "forgot it", {}))

    def test_your_own_password_is_changed_on_the_visus_page_that_checks_the_current_one(self):
        own = reverse("admin:accounts_user_password_change", args=[self.root.pk])
        self.assertRedirects(self.client.get(own), reverse("accounts:password-change"))
        self.assertRedirects(self.client.get("/admin/password_change/"), reverse("accounts:password-change"))
        self.assertEqual(reverse("admin:password_change"), "/admin/password_change/")

    def test_staff_who_are_not_superusers_cannot_open_the_account_pages(self):
        staff = member(Role.TRIAL_MANAGER, self.hospital, email="staff@visus.example", is_staff=True)
        staff.groups.add(Group.objects.get(name=TRIAL_MANAGERS))
        self.client.force_login(staff)
        for name in ("accounts_user", "accounts_hospital", "accounts_membership", "auth_group"):
            self.assertEqual(self.client.get(reverse(f"admin:{name}_changelist")).status_code, 403, name)
        url = reverse("admin:accounts_user_password_change", args=[self.person.pk])
        self.assertEqual(self.client.post(url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}).status_code, 403)


class CreateSuperuserTests(TestCase):
    def test_the_managers_create_user_goes_through_the_audited_service(self):
        user = User.objects.create_user("Someone@Visus.example", NEW_PASSWORD, full_name="Some One")
        self.assertEqual(user.email, "someone@visus.example")
        self.assertTrue(user.check_password(NEW_PASSWORD))
        event = AuditEvent.objects.get(action="user.create", object_id=str(user.pk))
        self.assertIsNone(event.actor)
        self.assertNotIn(NEW_PASSWORD, str(event.changes))
        with self.assertRaisesMessage(TypeError, "unexpected fields: ['password_hash']"):
            User.objects.create_user("other@visus.example", NEW_PASSWORD, password_hash="x")

    def test_createsuperuser_writes_an_audit_event_without_the_password(self):
        with mock.patch.dict(os.environ, {"DJANGO_SUPERUSER_PASSWORD": NEW_PASSWORD}):
            call_command(
                "createsuperuser", "--noinput", email="Ops@Visus.example", full_name="Ops", stdout=io.StringIO()
            )
        user = User.objects.get(email="ops@visus.example")
        self.assertTrue(user.is_superuser and user.is_staff and user.check_password(NEW_PASSWORD))
        event = AuditEvent.objects.get(action="user.create", object_id=str(user.pk))
        self.assertIsNone(event.actor)
        self.assertEqual(event.changes["is_superuser"], [None, True])
        self.assertEqual(event.reason, "created with manage.py createsuperuser")
        self.assertNotIn(NEW_PASSWORD, str(event.changes))


class HospitalAndMembershipAdminTests(SuperuserAdminTestCase):
    def test_a_hospital_is_added_with_a_normalised_code_through_hospital_create(self):
        url = reverse("admin:accounts_hospital_add")
        response = self.client.post(url, {"code": " h07 ", "name": " Westbrook Eye Unit ", "country": "gb"})
        self.assertEqual(response.status_code, 302)
        hospital = Hospital.objects.get(code="H07")
        self.assertEqual((hospital.name, hospital.country), ("Westbrook Eye Unit", "GB"))
        event = AuditEvent.objects.get(action="hospital.create")
        self.assertEqual((event.actor, event.hospital_code), (self.root, "H07"))
        duplicate = self.client.post(url, {"code": "h07", "name": "Again", "country": "GB"})
        self.assertIn("already exists", str(duplicate.context["adminform"].form.errors["code"]))
        self.assertEqual(Hospital.objects.filter(code="H07").count(), 1)

    def test_a_hospital_code_that_would_break_pseudonyms_is_refused_clearly_and_nothing_is_written(self):
        events = AuditEvent.objects.count()
        for code in ("h-01", "H 01", "H01/2", "X", "Hé1"):
            with self.subTest(code=code), self.assertRaisesMessage(ValidationError, "2-10 capital letters or digits"):
                hospital_create(actor=self.root, code=code, name="Bad code")
            response = self.client.post(
                reverse("admin:accounts_hospital_add"), {"code": code, "name": "Bad code", "country": "GB"}
            )
            self.assertIn("2-10 capital letters or digits", str(response.context["adminform"].form.errors["code"]))
        self.assertFalse(Hospital.objects.filter(name="Bad code").exists())
        self.assertEqual(AuditEvent.objects.count(), events)

    def test_a_hospital_change_needs_a_reason_and_its_code_is_fixed(self):
        hospital = HospitalFactory(code="H01")
        url = reverse("admin:accounts_hospital_change", args=[hospital.pk])
        page = self.client.get(url)
        self.assertIn("code", page.context["adminform"].readonly_fields)
        data = {"name": "Renamed", "country": "GB", "code": "X99"}
        self.assertIn("reason", self.client.post(url, data).context["adminform"].form.errors)
        self.assertRedirects(
            self.client.post(url, {**data, "reason": "merger"}), reverse("admin:accounts_hospital_changelist")
        )
        hospital.refresh_from_db()
        self.assertEqual((hospital.code, hospital.name), ("H01", "Renamed"))
        event = AuditEvent.objects.get(action="hospital.update")
        self.assertEqual((event.changes, event.reason), ({"name": ["Hospital H01", "Renamed"]}, "merger"))

    def test_a_membership_is_granted_through_the_service_and_revoked_only_with_a_reason(self):
        hospital = HospitalFactory(code="H01")
        person = member(Role.COORDINATOR, hospital, email="pat@visus.example")
        response = self.client.post(
            reverse("admin:accounts_membership_add"), {"user": person.pk, "hospital": hospital.pk, "role": Role.READER}
        )
        self.assertEqual(response.status_code, 302)
        membership = Membership.objects.get(user=person, role=Role.READER)
        grant = AuditEvent.objects.get(action="membership.grant")
        self.assertEqual(
            (grant.actor, grant.hospital_code, grant.changes["role"]), (self.root, "H01", [None, "reader"])
        )
        change = reverse("admin:accounts_membership_change", args=[membership.pk])
        self.assertEqual(self.client.post(change, {"is_active": ""}).status_code, 403)  # never edited
        url = reverse("admin:accounts_membership_changelist")
        action = {"action": "revoke_the_selected_memberships", "_selected_action": [str(membership.pk)]}
        self.client.post(url, {**action, "apply": "1", "reason": ""})
        membership.refresh_from_db()
        self.assertTrue(membership.is_active)
        self.client.post(url, {**action, "apply": "1", "reason": "left the reading panel"})
        membership.refresh_from_db()
        self.assertFalse(membership.is_active)
        event = AuditEvent.objects.get(action="membership.revoke")
        self.assertEqual((event.actor, event.reason), (self.root, "left the reading panel"))

    def test_the_users_page_lists_memberships_read_only(self):
        hospital = HospitalFactory(code="H01")
        person = member(Role.COORDINATOR, hospital, email="pat@visus.example")
        page = self.client.get(reverse("admin:accounts_user_change", args=[person.pk]))
        inline = page.context["inline_admin_formsets"][0]
        self.assertFalse(inline.has_add_permission)
        self.assertFalse(inline.has_change_permission)
        self.assertFalse(inline.formset.can_delete)


class GroupAdminTests(SuperuserAdminTestCase):
    def test_a_group_is_created_and_changed_through_the_audited_services(self):
        view_trial = Permission.objects.get(content_type__app_label="trials", codename="view_trial")
        view_case = Permission.objects.get(content_type__app_label="trials", codename="view_case")
        response = self.client.post(
            reverse("admin:auth_group_add"), {"name": "Auditors", "permissions": [view_trial.pk]}
        )
        self.assertEqual(response.status_code, 302)
        group = Group.objects.get(name="Auditors")
        created = AuditEvent.objects.get(action="group.create")
        self.assertEqual(created.changes["permissions"], [None, ["trials.view_trial"]])
        url = reverse("admin:auth_group_change", args=[group.pk])
        data = {"name": "Auditors", "permissions": [view_trial.pk, view_case.pk]}
        self.assertIn("reason", self.client.post(url, data).context["adminform"].form.errors)
        self.assertEqual(list(group.permissions.all()), [view_trial])
        self.assertEqual(self.client.post(url, {**data, "reason": "they check cases"}).status_code, 302)
        self.assertEqual(set(group.permissions.all()), {view_trial, view_case})
        updated = AuditEvent.objects.get(action="group.update")
        self.assertEqual(updated.changes["permissions"][1], ["trials.view_case", "trials.view_trial"])

    def test_a_declared_staff_group_is_read_only_here(self):
        group = Group.objects.get(name=TRIAL_MANAGERS)
        url = reverse("admin:auth_group_change", args=[group.pk])
        self.assertEqual(self.client.get(url).status_code, 200)
        response = self.client.post(url, {"name": "Everyone", "permissions": [], "reason": "x"})
        self.assertEqual(response.status_code, 403)
        self.assertTrue(Group.objects.get(pk=group.pk).permissions.exists())
        refused = self.client.post(reverse("admin:auth_group_add"), {"name": TRIAL_MANAGERS, "permissions": []})
        self.assertEqual(refused.status_code, 200)  # the name is taken


class TrialAdminTests(TestCase):
    def setUp(self):
        self.w = TrialWorld()
        self.root = User.objects.create_superuser(email="root@visus.example", password=TEST_PASSWORD, full_name="Root")
        self.client.force_login(self.root)

    def trial_form(self, slug: str) -> dict[str, str]:
        return {
            "slug": slug,
            "protocol_number": f"P-{slug}",
            "title": "Admin trial",
            "subject_prefix": "AD01",
            "modalities": '["fundus"]',
            "reading_form": '["icdr_grade", "referable_dr", "confidence"]',
            "readers_per_case": "2",
            "reading_design": "unaided",
            "washout_days": "0",
            "reference_rule": "adjudication",
            "inclusion_criteria": '["Age 18 or over"]',
            "exclusion_criteria": "[]",
            "vf_max_fixation_losses": "20",
            "vf_max_false_positives": "15",
            "vf_max_false_negatives": "33",
        }

    def test_a_trial_added_by_its_manager_is_created_by_trial_create_with_its_reference(self):
        manager = self.w.manager
        manager.is_staff = True
        manager.save(update_fields=["is_staff"])
        manager.groups.add(Group.objects.get(name=TRIAL_MANAGERS))
        self.client.force_login(manager)
        response = self.client.post(reverse("admin:trials_trial_add"), self.trial_form("admin-trial"))
        self.assertEqual(response.status_code, 302, response.context and response.context["adminform"].form.errors)
        trial = Trial.objects.get(slug="admin-trial")
        self.assertEqual((trial.status, trial.created_by), ("draft", manager))
        event = AuditEvent.objects.get(action="trial.create", object_id=str(trial.pk))
        self.assertEqual(event.trial_ref, "admin-trial")
        site = {"trial": trial.pk, "hospital": self.w.h1.pk, "enrolment_target": "4"}
        self.assertEqual(self.client.post(reverse("admin:trials_trialsite_add"), site).status_code, 302)
        self.assertIn(event, audit_events_for(manager))  # the trial's own managers and monitors see its creation
        self.assertIn(event, audit_events_for(self.w.monitor))

    def test_a_superuser_who_manages_no_trial_is_refused_and_nothing_is_saved(self):
        response = self.client.post(reverse("admin:trials_trial_add"), self.trial_form("root-trial"), follow=True)
        self.assertIn("Only a trial manager of this trial may do this.", messages_of(response))
        self.assertFalse(Trial.objects.filter(slug="root-trial").exists())

    def test_a_recruiting_trials_protocol_is_fixed_and_a_title_change_needs_a_reason(self):
        url = reverse("admin:trials_trial_change", args=[self.w.trial.pk])
        page = self.client.get(url)
        readonly = set(page.context["adminform"].readonly_fields)
        self.assertTrue(
            {"modalities", "reading_form", "reading_design", "slug", "subject_prefix", "status"} <= readonly
        )
        self.assertNotIn("title", readonly)
        inline = page.context["inline_admin_formsets"][0]
        self.assertFalse(inline.has_add_permission)
        self.assertFalse(inline.formset.can_delete)
        data = {**change_data(page), "title": "Renamed trial", "modalities": '["fundus", "oct"]'}
        self.assertIn("reason", self.client.post(url, data).context["adminform"].form.errors)
        self.client.force_login(self.w.manager)  # the service lets the trial's managers change it
        self.w.manager.is_staff = True
        self.w.manager.save(update_fields=["is_staff"])
        self.w.manager.groups.add(Group.objects.get(name=TRIAL_MANAGERS))
        response = self.client.post(url, {**data, "reason": "sponsor's wording"})
        self.assertEqual(response.status_code, 302)
        trial = Trial.objects.get(pk=self.w.trial.pk)
        self.assertEqual((trial.title, trial.modalities), ("Renamed trial", ["fundus"]))
        event = AuditEvent.objects.get(action="trial.update")
        self.assertEqual((event.changes, event.trial_ref), ({"title": ["Trial dr-trial", "Renamed trial"]}, "dr-trial"))

    def test_a_sites_hospital_is_fixed_and_a_target_change_needs_a_reason(self):
        self.root.memberships.create(hospital=self.w.h1, role=Role.TRIAL_MANAGER)
        site = TrialSite.objects.get(trial=self.w.trial, hospital=self.w.h1)
        url = reverse("admin:trials_trialsite_change", args=[site.pk])
        page = self.client.get(url)
        self.assertEqual(set(page.context["adminform"].readonly_fields), {"trial", "hospital"})
        form = {"enrolment_target": "77", "status": site.status, "hospital": self.w.h2.pk}
        self.assertIn("reason", self.client.post(url, form).context["adminform"].form.errors)
        site.refresh_from_db()
        self.assertEqual(site.enrolment_target, 10)
        response = self.client.post(url, {**form, "reason": "second clinic opened"})
        self.assertEqual(response.status_code, 302)
        site.refresh_from_db()
        self.assertEqual((site.hospital, site.enrolment_target), (self.w.h1, 77))
        event = AuditEvent.objects.get(action="trial_site.update")
        self.assertEqual((event.changes, event.reason), ({"enrolment_target": [10, 77]}, "second clinic opened"))
        self.assertFalse(AuditEvent.objects.filter(action="trialsite.change").exists())

    def test_a_superuser_cannot_add_a_site_to_a_closed_trial(self):
        from trials.services import trial_transition

        self.root.memberships.create(hospital=self.w.h1, role=Role.TRIAL_MANAGER)
        trial_transition(actor=self.w.manager, trial=self.w.trial, status="closed", reason="study ended")
        h3 = HospitalFactory(code="H03")
        form = {"trial": self.w.trial.pk, "hospital": h3.pk, "enrolment_target": "9"}
        response = self.client.post(reverse("admin:trials_trialsite_add"), form, follow=True)
        self.assertIn("The trial is closed: no sites can be added.", messages_of(response))
        self.assertFalse(TrialSite.objects.filter(hospital=h3).exists())

    def test_a_trial_is_closed_by_the_audited_transition_with_a_reason_and_only_by_its_managers(self):
        url = reverse("admin:trials_trial_changelist")
        action = {"action": "close_the_selected_trials", "_selected_action": [str(self.w.trial.pk)]}
        refused = self.client.post(url, {**action, "apply": "1", "reason": "sponsor stopped it"}, follow=True)
        self.assertIn(
            f"Refused, nothing changed for {self.w.trial}: Only a trial manager of this trial may do this.",
            messages_of(refused),
        )
        self.root.memberships.create(hospital=self.w.h1, role=Role.TRIAL_MANAGER)
        self.client.post(url, {**action, "apply": "1", "reason": "sponsor stopped it"})
        self.w.trial.refresh_from_db()
        self.assertEqual(self.w.trial.status, "closed")
        event = AuditEvent.objects.get(action="trial.transition", changes__status=["recruiting", "closed"])
        self.assertEqual((event.actor, event.reason, event.trial_ref), (self.root, "sponsor stopped it", "dr-trial"))

    def test_subjects_and_cases_are_read_only(self):
        for name, obj in (("trials_subject", self.w.subject1), ("trials_case", self.w.case1)):
            url = reverse(f"admin:{name}_change", args=[obj.pk])
            self.assertEqual(self.client.post(url, {}).status_code, 403, name)
            self.assertEqual(self.client.get(reverse(f"admin:{name}_add")).status_code, 403, name)


class AdminScopeTests(TestCase):
    """Staff see in the admin only what their memberships show them on the pages; AI outputs stay blinded."""

    def setUp(self):
        self.w = TrialWorld()
        self.staff = member(Role.TRIAL_MANAGER, self.w.h1, email="staff@visus.example")
        self.staff.is_staff = True
        self.staff.save(update_fields=["is_staff"])
        self.staff.groups.add(Group.objects.get(name=TRIAL_MANAGERS))
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
        form = {"hospital": h3.pk, "enrolment_target": "9"}
        response = self.client.post(url, {**form, "trial": self.other_trial.pk})
        self.assertEqual(response.status_code, 200)  # refused: not a choice for them
        self.assertFalse(TrialSite.objects.filter(trial=self.other_trial, hospital=h3).exists())
        response = self.client.post(url, {**form, "trial": self.w.trial.pk})
        self.assertEqual(response.status_code, 302, response.context and response.context["adminform"].form.errors)
        site = TrialSite.objects.get(trial=self.w.trial, hospital=h3)
        self.assertTrue(AuditEvent.objects.filter(object_id=str(site.pk), action="trial_site.create").exists())
        listing = self.client.get(reverse("admin:trials_subject_changelist")).content.decode()
        self.assertNotIn("P-h2-only", listing)  # the trial filter lists only trials of the rows shown

    def test_a_site_the_service_refuses_comes_back_as_a_message_and_nothing_is_saved(self):
        from trials.services import trial_transition

        trial_transition(actor=self.w.manager, trial=self.w.trial, status="closed", reason="study ended")
        url = reverse("admin:trials_trialsite_add")
        h3 = HospitalFactory(code="H03")
        form = {"trial": self.w.trial.pk, "hospital": h3.pk, "enrolment_target": "9"}
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

    def test_fusion_calibrations_are_read_only_scoped_to_the_staff_members_trials_and_blinded(self):
        from diagnosis.models import FusionCalibration
        from diagnosis.networks.fusion import FusionWeights

        def calibration(trial):
            return FusionCalibration.objects.create(
                trial=trial, weights=FusionWeights(prior_probability=0.3).to_dict(), eyes=40, positives=12
            )

        mine, theirs = calibration(self.w.trial), calibration(self.other_trial)
        self.assertEqual(self.changelist("diagnosis_fusioncalibration"), [mine])
        listing = self.client.get(reverse("admin:diagnosis_fusioncalibration_changelist")).content.decode()
        self.assertNotIn("P-h2-only", listing)  # the trial filter lists only trials of the rows shown
        url = reverse("admin:diagnosis_fusioncalibration_change", args=[mine.pk])
        self.assertEqual(self.client.get(url).context["original"], mine)
        self.assertEqual(self.client.post(url, {"eyes": "1"}).status_code, 403)
        self.assertEqual(self.client.get(reverse("admin:diagnosis_fusioncalibration_add")).status_code, 403)
        other = self.client.get(reverse("admin:diagnosis_fusioncalibration_change", args=[theirs.pk]))
        self.assertIn(other.status_code, (302, 404))
        Membership.objects.create(user=self.staff, hospital=self.w.h1, role=Role.READER)
        self.assertEqual(self.changelist("diagnosis_fusioncalibration"), [])


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


class ModelVersionAdminTests(SuperuserAdminTestCase):
    def test_retiring_a_model_asks_for_the_reason_model_set_status_records(self):
        from tests.support.registry import register_small_models

        dr, vf = register_small_models()
        self.addCleanup(lambda: [default_storage.delete(m.weights.name) for m in (dr, vf)])
        url = reverse("admin:diagnosis_modelversion_changelist")
        action = {"action": "retire_the_selected_models", "_selected_action": [str(dr.pk)]}
        self.assertContains(self.client.post(url, action), "Retire the selected models")
        self.client.post(url, {**action, "apply": "1", "reason": ""})
        dr.refresh_from_db()
        self.assertEqual(dr.status, "active")
        self.client.post(url, {**action, "apply": "1", "reason": "superseded by version 2"})
        dr.refresh_from_db()
        vf.refresh_from_db()
        self.assertEqual((dr.status, vf.status), ("retired", "active"))
        event = AuditEvent.objects.filter(object_id=str(dr.pk), reason="superseded by version 2").get()
        self.assertEqual(event.changes["status"], ["active", "retired"])
        self.assertEqual(
            self.client.post(reverse("admin:diagnosis_modelversion_change", args=[dr.pk]), {}).status_code, 403
        )
