from io import StringIO

from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.test import TestCase

from platform_core.accounts.models import Role
from platform_core.accounts.services import hospital_create, membership_grant, membership_revoke
from platform_core.audit.chain import GENESIS_HASH
from platform_core.audit.models import AuditEvent
from platform_core.audit.services import audit_record, audit_verify, diff
from tests.support import require_postgresql
from tests.support.factories import UserFactory


def verify_command() -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit_trail", stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, out.getvalue()


class AuditChainTests(TestCase):
    def setUp(self):
        self.actor = UserFactory(email="manager@visus.example")
        self.hospital = hospital_create(actor=self.actor, code="h09", name="Hospital Nine")
        user = UserFactory()
        self.membership = membership_grant(actor=self.actor, user=user, hospital=self.hospital, role=Role.READER)
        membership_revoke(actor=self.actor, membership=self.membership, reason="left the study team")

    def test_services_write_who_what_old_new_and_why(self):
        events = list(AuditEvent.objects.order_by("seq"))
        self.assertEqual([e.action for e in events], ["hospital.create", "membership.grant", "membership.revoke"])
        revoke = events[-1]
        self.assertEqual(revoke.actor, self.actor)
        self.assertEqual(revoke.actor_email, "manager@visus.example")
        self.assertEqual(revoke.changes, {"is_active": [True, False]})
        self.assertEqual(revoke.reason, "left the study team")
        self.assertEqual(revoke.hospital_code, "H09")
        self.assertEqual(revoke.object_id, str(self.membership.pk))

    def test_events_are_numbered_and_chained(self):
        events = list(AuditEvent.objects.order_by("seq"))
        self.assertEqual([e.seq for e in events], [1, 2, 3])
        self.assertEqual(events[0].prev_hash, GENESIS_HASH)
        for earlier, later in zip(events, events[1:], strict=False):
            self.assertEqual(later.prev_hash, earlier.hash)

    def test_intact_chain_verifies(self):
        report = audit_verify()
        self.assertTrue(report.ok)
        self.assertEqual(report.checked, 3)
        code, output = verify_command()
        self.assertEqual(code, 0)
        self.assertIn("3 event(s) verified", output)

    def test_reason_is_required_to_revoke(self):
        from django.core.exceptions import ValidationError

        with self.assertRaises(ValidationError):
            membership_revoke(actor=self.actor, membership=self.membership, reason=" ")

    def test_diff_lists_only_changed_fields(self):
        self.assertEqual(diff({"a": 1, "b": 2}, {"a": 1, "b": 3}), {"b": [2, 3]})
        self.assertEqual(diff(None, {"a": 1}), {"a": [None, 1]})

    def test_failed_transaction_leaves_no_event(self):
        before = AuditEvent.objects.count()
        with self.assertRaises(RuntimeError), transaction.atomic():
            audit_record(actor=self.actor, action="test.rollback", reason="x")
            raise RuntimeError("boom")
        self.assertEqual(AuditEvent.objects.count(), before)
        self.assertTrue(audit_verify().ok)

    def test_admin_cannot_edit_or_delete_events(self):
        from django.contrib.admin.sites import site

        model_admin = site._registry[AuditEvent]
        self.assertFalse(model_admin.has_change_permission(None))
        self.assertFalse(model_admin.has_delete_permission(None))
        self.assertFalse(model_admin.has_add_permission(None))


class AuditTamperDetectionTests(TestCase):
    """Edits and deletions are caught by verify_audit_trail (exit 1, first bad event named)."""

    def setUp(self):
        actor = UserFactory()
        for n in range(5):
            audit_record(actor=actor, action="test.event", object_id=str(n), changes={"n": [n, n + 1]})

    def _raw(self, sql: str, params: list) -> None:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # Simulate an attacker with table-owner rights who bypasses the trigger.
                cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute(sql, params)
            if connection.vendor == "postgresql":
                cursor.execute("SET LOCAL session_replication_role = origin")

    def test_edited_event_is_named(self):
        self._raw("UPDATE audit_auditevent SET reason = %s WHERE seq = %s", ["covered up", 3])
        code, message = verify_command()
        self.assertEqual(code, 1)
        self.assertIn("event #3 was modified", message)

    def test_edited_changes_are_detected(self):
        self._raw("UPDATE audit_auditevent SET changes = %s WHERE seq = %s", ['{"n": [0, 99]}', 1])
        self.assertEqual(audit_verify().first_bad_seq, 1)

    def test_deleted_event_is_named(self):
        self._raw("DELETE FROM audit_auditevent WHERE seq = %s", [2])
        code, message = verify_command()
        self.assertEqual(code, 1)
        self.assertIn("event(s) #2..#2 were deleted", message)

    def test_deleting_the_last_events_is_caught_against_a_head_kept_outside(self):
        out = StringIO()
        call_command("verify_audit_trail", stdout=out)
        head = out.getvalue().split("Head: ")[1].strip()
        self.assertTrue(head.startswith("5:"))
        self._raw("DELETE FROM audit_auditevent WHERE seq >= %s", [4])
        self.assertIn("its head record names #5", audit_verify().problem)
        # An operator who also moves the head record back: the chain alone can no longer see the cut.
        self._raw("UPDATE audit_audithead SET seq = 3, hash = %s", [AuditEvent.objects.get(seq=3).hash])
        self.assertTrue(audit_verify().ok)
        with self.assertRaisesMessage(CommandError, "event(s) #4..#5 were deleted"):
            call_command("verify_audit_trail", expect_head=head, stdout=StringIO())

    def test_a_rewritten_head_is_caught(self):
        report = audit_verify()
        with self.assertRaisesMessage(CommandError, "event #5 is not the one recorded earlier"):
            call_command("verify_audit_trail", expect_head=f"5:{'0' * 64}", stdout=StringIO())
        call_command("verify_audit_trail", expect_head=f"{report.head[0]}:{report.head[1]}", stdout=StringIO())

    def test_rehashed_forgery_is_still_detected_by_the_next_link(self):
        event = AuditEvent.objects.get(seq=2)
        from platform_core.audit.chain import event_hash, payload_digest
        from platform_core.audit.services import _fields_of, _payload_of, chain_key

        # Even with the key (an insider holding both): the next event still links to the old hash.
        event.reason = "forged"
        event.payload_digest = payload_digest(_payload_of(event), event.payload_salt)
        forged_hash = event_hash(_fields_of(event), event.prev_hash, chain_key())
        self._raw(
            "UPDATE audit_auditevent SET reason = %s, payload_digest = %s, hash = %s WHERE seq = %s",
            ["forged", event.payload_digest, forged_hash, 2],
        )
        report = audit_verify()
        self.assertFalse(report.ok)
        self.assertEqual(report.first_bad_seq, 3)


class AuditPostgresTriggerTests(TestCase):
    def setUp(self):
        require_postgresql()
        audit_record(actor=None, action="test.event", reason="original")

    def test_update_is_refused_by_the_database(self):
        with self.assertRaisesMessage(DatabaseError, "append-only"), transaction.atomic():
            AuditEvent.objects.filter(seq=1).update(reason="changed")
        self.assertEqual(AuditEvent.objects.get(seq=1).reason, "original")

    def test_delete_is_refused_by_the_database(self):
        with self.assertRaisesMessage(DatabaseError, "append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM audit_auditevent")
        self.assertEqual(AuditEvent.objects.count(), 1)

    def test_trigger_exists_on_the_table(self):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_auditevent'::regclass AND NOT tgisinternal"
            )
            self.assertEqual(
                sorted(row[0] for row in cursor.fetchall()),
                ["audit_auditevent_no_delete", "audit_auditevent_no_truncate", "audit_auditevent_redact_only"],
            )

    def test_truncate_is_refused_by_the_database(self):
        with self.assertRaisesMessage(DatabaseError, "append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                # The test's own insert left deferred FK checks pending; settle them so TRUNCATE reaches the trigger.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute("TRUNCATE audit_auditevent")
        self.assertEqual(AuditEvent.objects.count(), 1)
