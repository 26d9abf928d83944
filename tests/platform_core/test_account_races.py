"""A permission group changed while an administrator puts someone in it (PostgreSQL, real threads). Both finish, in
either order, and the trail verifies.

``user_update`` records its event (holding the audit chain's lock) and then adds the account to its groups: the new
row's foreign key to the group is checked at commit (FOR KEY SHARE on the group). ``group_update`` locked the group
FOR UPDATE, and a rename writes the group's unique name (a key, for PostgreSQL: the update itself takes FOR UPDATE),
before it waited for the chain's lock to record its event: a deadlock."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.test import TransactionTestCase

from platform_core.accounts.services import group_create, group_update, user_update
from platform_core.audit.models import AuditEvent
from platform_core.audit.services import audit_verify
from tests.support import require_postgresql
from tests.support.factories import UserFactory
from tests.support.races import paused_race


class GroupChangedWhileSomeoneJoinsItTests(TransactionTestCase):
    def setUp(self):
        require_postgresql()
        self.admin = UserFactory(is_staff=True, is_superuser=True)
        self.person = UserFactory(full_name="Pat Person")
        self.view_trial = Permission.objects.get(content_type__app_label="trials", codename="view_trial")
        self.group = group_create(actor=self.admin, name="Auditors", permissions=[])

    def join(self) -> None:
        user_update(actor=self.admin, user=self.person, reason="audits trial 1", groups=[self.group])

    def check(self, name: str, permissions: list[Permission]) -> None:
        group = Group.objects.get(pk=self.group.pk)
        self.assertEqual((group.name, list(group.permissions.all())), (name, permissions))
        self.assertEqual(list(self.person.groups.all()), [group])
        self.assertEqual(AuditEvent.objects.filter(action__in=["group.update", "user.update"]).count(), 2)
        report = audit_verify()
        self.assertTrue(report.ok, report.problem)

    def test_a_group_renamed_while_someone_joins_it(self):
        def rename() -> None:
            group_update(actor=self.admin, group=self.group, reason="clearer", name="Trial auditors")

        # The rename holds the group (and, now, the chain's lock) when the person's update commits.
        errors = paused_race("platform_core.accounts.services.audit_record", rename, self.join)
        self.assertEqual(errors, [])
        self.check("Trial auditors", [])

    def test_a_groups_permissions_changed_while_someone_joins_it(self):
        def grant() -> None:
            group_update(actor=self.admin, group=self.group, reason="they read trials", permissions=[self.view_trial])

        errors = paused_race("platform_core.accounts.services.audit_record", grant, self.join)
        self.assertEqual(errors, [])
        self.check("Auditors", [self.view_trial])
