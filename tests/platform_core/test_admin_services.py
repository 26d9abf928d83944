"""The account services the admin calls: explicit audited fields, a reason for every change, clear refusals
that change nothing."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.test import TestCase

from platform_core.accounts.models import ApiToken, User
from platform_core.accounts.services import (
    api_token_issue,
    group_create,
    group_update,
    hospital_update,
    user_create_superuser,
    user_password_set,
    user_update,
)
from platform_core.accounts.staff_groups import TRIAL_MANAGERS
from platform_core.audit.models import AuditEvent
from tests.support.factories import TEST_PASSWORD, HospitalFactory, UserFactory

NEW_PASSWORD = "a-Fresh-pass-2026"


class UserServiceTests(TestCase):
    def setUp(self):
        self.admin = UserFactory(is_staff=True, is_superuser=True)
        self.person = UserFactory(full_name="Pat Person")

    def test_an_update_records_only_the_fields_that_changed(self):
        user_update(actor=self.admin, user=self.person, reason="married", full_name="Pat Newname", is_active=True)
        event = AuditEvent.objects.get(action="user.update")
        self.assertEqual(event.changes, {"full_name": ["Pat Person", "Pat Newname"]})

    def test_an_update_without_a_change_records_nothing_and_needs_no_reason(self):
        user_update(actor=self.admin, user=self.person, reason="", full_name="Pat Person", groups=[])
        self.assertFalse(AuditEvent.objects.filter(action="user.update").exists())

    def test_refusals_change_nothing(self):
        with self.assertRaisesMessage(ValidationError, "Give a reason for changing an account."):
            user_update(actor=self.admin, user=self.person, reason=" ", is_staff=True)
        with self.assertRaisesMessage(ValidationError, "You cannot change your own access"):
            user_update(actor=self.admin, user=self.admin, reason="tidy", is_superuser=False)
        with self.assertRaises(ValueError):
            user_update(actor=self.admin, user=self.person, reason="x", password="plain")
        group = Group.objects.get(name=TRIAL_MANAGERS)
        with self.assertRaises(ValidationError):
            user_update(actor=self.admin, user=self.person, reason="", groups=[group])
        self.person.refresh_from_db()
        self.admin.refresh_from_db()
        self.assertFalse(self.person.is_staff or self.person.groups.exists())
        self.assertTrue(self.admin.is_superuser)
        self.assertFalse(AuditEvent.objects.filter(action="user.update").exists())

    def test_deactivating_an_account_ends_its_api_tokens(self):
        api_token_issue(user=self.person)
        user_update(actor=self.admin, user=self.person, reason="left the trial", is_active=False)
        self.assertFalse(ApiToken.objects.filter(user=self.person).exists())

    def test_setting_a_password_checks_the_rules_and_records_no_secret(self):
        with self.assertRaises(ValidationError) as weak:
            user_password_set(actor=self.admin, user=self.person, password="short", reason="reset")
        self.assertIn("password", weak.exception.message_dict)
        with self.assertRaisesMessage(ValidationError, "Give a reason"):
            user_password_set(actor=self.admin, user=self.person, password=NEW_PASSWORD, reason="")
        with self.assertRaisesMessage(ValidationError, "your password page"):
            user_password_set(actor=self.admin, user=self.admin, password=NEW_PASSWORD, reason="mine")
        self.person.refresh_from_db()
        self.assertTrue(self.person.check_password(TEST_PASSWORD))
        api_token_issue(user=self.person)
        user_password_set(actor=self.admin, user=self.person, password=NEW_PASSWORD, reason="forgot it")
        self.person.refresh_from_db()
        self.assertTrue(self.person.check_password(NEW_PASSWORD))
        self.assertFalse(ApiToken.objects.filter(user=self.person).exists())
        event = AuditEvent.objects.get(action="user.password_set")
        self.assertEqual((event.changes, event.reason), ({}, "forgot it"))

    def test_createsuperuser_refuses_an_email_that_differs_only_by_case(self):
        user_create_superuser(email="ops@visus.example", full_name="Ops", password=NEW_PASSWORD)
        with self.assertRaisesMessage(ValidationError, "already exists"):
            user_create_superuser(email="OPS@visus.example", full_name="Ops again", password=NEW_PASSWORD)
        self.assertEqual(User.objects.filter(email__iexact="ops@visus.example").count(), 1)


class HospitalServiceTests(TestCase):
    def test_a_hospitals_code_cannot_change_and_a_change_needs_a_reason(self):
        admin = UserFactory(is_staff=True, is_superuser=True)
        hospital = HospitalFactory(code="H01", name="Old", country="GB")
        with self.assertRaises(ValueError):
            hospital_update(actor=admin, hospital=hospital, reason="typo", code="H02")
        with self.assertRaisesMessage(ValidationError, "Give a reason"):
            hospital_update(actor=admin, hospital=hospital, reason="", name="New")
        hospital_update(actor=admin, hospital=hospital, reason="new country code", country=" ie ")
        hospital.refresh_from_db()
        self.assertEqual((hospital.code, hospital.name, hospital.country), ("H01", "Old", "IE"))
        event = AuditEvent.objects.get(action="hospital.update")
        self.assertEqual((event.changes, event.hospital_code), ({"country": ["GB", "IE"]}, "H01"))


class GroupServiceTests(TestCase):
    def setUp(self):
        self.admin = UserFactory(is_staff=True, is_superuser=True)
        self.view_trial = Permission.objects.get(content_type__app_label="trials", codename="view_trial")

    def test_a_declared_staff_group_is_changed_in_code_only(self):
        declared = Group.objects.get(name=TRIAL_MANAGERS)
        before = set(declared.permissions.all())
        with self.assertRaisesMessage(ValidationError, "declared by the code"):
            group_update(actor=self.admin, group=declared, reason="more", permissions=[self.view_trial])
        with self.assertRaisesMessage(ValidationError, "declared by the code"):
            group_create(actor=self.admin, name=f" {TRIAL_MANAGERS} ", permissions=[])
        other = group_create(actor=self.admin, name="Readers of trials", permissions=[self.view_trial])
        with self.assertRaisesMessage(ValidationError, "declared by the code"):
            group_update(actor=self.admin, group=other, reason="take over", name=TRIAL_MANAGERS)
        self.assertEqual(set(Group.objects.get(name=TRIAL_MANAGERS).permissions.all()), before)

    def test_a_group_change_records_names_and_permissions(self):
        group = group_create(actor=self.admin, name="Auditors", permissions=[])
        group_update(
            actor=self.admin, group=group, reason="rename", name="Trial auditors", permissions=[self.view_trial]
        )
        event = AuditEvent.objects.get(action="group.update")
        self.assertEqual(
            event.changes, {"name": ["Auditors", "Trial auditors"], "permissions": [[], ["trials.view_trial"]]}
        )
        self.assertEqual(event.reason, "rename")
