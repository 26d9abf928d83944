"""Staff permission groups are production policy: declared by each app, created by every migrate, idempotent."""

from __future__ import annotations

import types
from unittest import mock

from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.test import TestCase

from platform_core.accounts.staff_groups import TRIAL_MANAGERS, declared_staff_groups, staff_groups_sync


def permission_names(group: Group) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


EXPECTED_TRIAL_MANAGER_PERMISSIONS = {
    "trials.add_trial",
    "trials.change_trial",
    "trials.view_trial",
    "trials.add_trialsite",
    "trials.change_trialsite",
    "trials.view_trialsite",
    "trials.view_subject",
    "trials.view_case",
    "diagnosis.add_modelversion",
    "diagnosis.change_modelversion",
    "diagnosis.view_modelversion",
    "diagnosis.view_inferencejob",
    "diagnosis.view_prediction",
    "diagnosis.view_fusioncalibration",
    "audit.view_auditevent",
}


class StaffGroupTests(TestCase):
    def test_migrate_created_the_trial_managers_group_with_exactly_what_the_apps_declare(self):
        # The test database was built by migrate: nothing in this test creates the group.
        group = Group.objects.get(name=TRIAL_MANAGERS)
        self.assertEqual(permission_names(group), EXPECTED_TRIAL_MANAGER_PERMISSIONS)
        self.assertEqual(set(declared_staff_groups()[TRIAL_MANAGERS]), {"trials", "diagnosis", "audit"})

    def test_the_sync_restores_the_declared_permissions_and_a_second_run_changes_nothing(self):
        group = Group.objects.get(name=TRIAL_MANAGERS)
        group.permissions.remove(Permission.objects.get(codename="add_trial"))
        group.permissions.add(Permission.objects.get(codename="delete_trial"))
        group.permissions.add(Permission.objects.get(codename="change_user"))  # another app's: left alone
        with self.assertLogs("platform_core.accounts.staff_groups", "INFO") as logs:  # a changed policy is news
            self.assertEqual(staff_groups_sync(apps.get_app_config("trials")), [TRIAL_MANAGERS])
        self.assertIn("permissions on trials set as declared", logs.output[0])
        self.assertEqual(permission_names(group), EXPECTED_TRIAL_MANAGER_PERMISSIONS | {"accounts.change_user"})
        self.assertEqual(staff_groups_sync(apps.get_app_config("trials")), [])
        self.assertEqual(staff_groups_sync(apps.get_app_config("accounts")), [])  # declares nothing

    def test_migrate_creates_a_deleted_group_again(self):
        Group.objects.filter(name=TRIAL_MANAGERS).delete()
        call_command("migrate", verbosity=0)
        self.assertEqual(permission_names(Group.objects.get(name=TRIAL_MANAGERS)), EXPECTED_TRIAL_MANAGER_PERMISSIONS)

    def test_a_declaration_naming_an_unknown_model_or_action_fails_loudly(self):
        config = apps.get_app_config("trials")
        for declared in ({TRIAL_MANAGERS: {"trail": ("view",)}}, {TRIAL_MANAGERS: {"trial": ("approve",)}}):
            module = types.SimpleNamespace(STAFF_PERMISSIONS=declared)
            with (
                mock.patch("importlib.import_module", return_value=module),
                self.assertRaises((LookupError, ValueError)),
            ):
                staff_groups_sync(config)

    def test_the_demo_gives_its_manager_the_declared_group(self):
        from demo.seeding import seed_people

        seed_people()
        from platform_core.accounts.models import User

        manager = User.objects.get(email="manager@visus.example")
        self.assertEqual(list(manager.groups.values_list("name", flat=True)), [TRIAL_MANAGERS])
        self.assertTrue(manager.has_perm("trials.add_trialsite"))
        self.assertFalse(manager.has_perm("accounts.change_user"))
