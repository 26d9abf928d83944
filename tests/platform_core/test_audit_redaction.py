"""Redacting a secret from the audit trail keeps the chain verifiable; every other edit is still caught."""

import importlib
from io import StringIO

from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.test import TestCase
from django.urls import reverse

from platform_core.accounts.models import Hospital, Role
from platform_core.accounts.services import hospital_create
from platform_core.audit.chain import payload_digest
from platform_core.audit.models import AuditEvent
from platform_core.audit.services import audit_record, audit_redact, audit_verify, redaction_marker
from tests.support import require_postgresql
from tests.support.factories import UserFactory, member

SECRET = "Tr0ub4dor-3-typed-in-a-note"

migration = importlib.import_module("platform_core.audit.migrations.0004_audit_payload_digest")
keyed = importlib.import_module("platform_core.audit.migrations.0006_audit_keyed_chain")


def verify_command() -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("verify_audit_trail", stdout=out, stderr=StringIO())
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, out.getvalue()


def redact_command(*args: str) -> str:
    out = StringIO()
    call_command("redact_audit_event", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def raw(sql: str, params: list) -> None:
    """Write past the triggers, as an attacker with the table owner's rights could."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = origin")


def everything_stored() -> str:
    return " ".join(str(row) for row in AuditEvent.objects.values_list())


class RedactionTests(TestCase):
    def setUp(self):
        self.actor = UserFactory(email="manager@visus.example")
        hospital_create(actor=self.actor, code="h01", name="Hospital One")  # 1
        self.leak = audit_record(  # 2: a secret that landed in a payload
            actor=self.actor,
            action="test.event",
            object_repr=f"note {SECRET}",
            changes={"note": [None, SECRET]},
            reason=f"typed {SECRET}",
            hospital_code="H01",
            trial_ref="dr-trial",
        )
        audit_record(actor=self.actor, action="test.event", changes={"n": [1, 2]})  # 3

    def test_verify_passes_before_and_after_a_redaction_and_the_secret_is_gone(self):
        self.assertIn(SECRET, everything_stored())
        self.assertEqual(verify_command()[0], 0)
        output = redact_command("2", "--reason", "a password was typed into a note")
        self.assertIn("Audit event #2 redacted; the redaction is recorded as event #4.", output)
        code, output = verify_command()
        self.assertEqual(code, 0, output)
        self.assertIn("4 event(s) verified (1 redacted", output)
        self.assertNotIn(SECRET, everything_stored())
        event = AuditEvent.objects.get(seq=2)
        self.assertEqual(event.changes, redaction_marker(4))
        self.assertEqual((event.reason, event.object_repr, event.payload_salt), ("", "", ""))
        self.assertEqual(event.redacted_by_seq, 4)
        # The header, the digest and the hash are those written at the time.
        self.assertEqual((event.payload_digest, event.hash), (self.leak.payload_digest, self.leak.hash))
        self.assertEqual((event.action, event.hospital_code, event.actor_id), ("test.event", "H01", self.actor.pk))

    def test_the_redaction_is_an_audited_event_naming_the_event_and_the_reason(self):
        redaction = audit_redact(actor=self.actor, seq=2, reason="a password was typed into a note")
        self.assertEqual(redaction.action, "audit_event.redact")
        self.assertEqual((redaction.object_type, redaction.object_id), ("audit.auditevent", "2"))
        self.assertEqual(redaction.reason, "a password was typed into a note")
        self.assertEqual(redaction.changes, {"payload": [self.leak.payload_digest, "redacted"]})
        self.assertEqual(redaction.actor, self.actor)
        # Those who may review the redacted event see its redaction too.
        self.assertEqual((redaction.hospital_code, redaction.trial_ref), ("H01", "dr-trial"))

    def test_the_operator_is_recorded_as_the_actor(self):
        redact_command("2", "--reason", "secret", "--actor", "MANAGER@visus.example")
        self.assertEqual(AuditEvent.objects.get(seq=4).actor, self.actor)
        with self.assertRaisesMessage(CommandError, "No Visus account has the email nobody@visus.example"):
            redact_command("3", "--reason", "secret", "--actor", "nobody@visus.example")
        self.assertIsNone(AuditEvent.objects.get(seq=3).redacted_by_seq)

    def test_redacting_an_event_twice_is_a_clear_error(self):
        redact_command("2", "--reason", "secret")
        with self.assertRaisesMessage(CommandError, "Audit event #2 was already redacted by event #4."):
            redact_command("2", "--reason", "again")
        self.assertEqual(AuditEvent.objects.count(), 4)

    def test_the_record_of_a_redaction_is_never_redacted(self):
        redaction = audit_redact(actor=self.actor, seq=self.leak.seq, reason="password typed in a note")
        with self.assertRaisesMessage(CommandError, f"Audit event #{redaction.seq} is the trail's own record"):
            redact_command(str(redaction.seq), "--reason", "hide who redacted")
        event = AuditEvent.objects.get(seq=redaction.seq)
        self.assertEqual(event.reason, "password typed in a note")
        self.assertIsNone(event.redacted_by_seq)
        self.assertTrue(audit_verify().ok)

    def test_the_rehash_record_is_never_redacted(self):
        rehash = audit_record(actor=None, action="audit_trail.rehash", changes={"head": ["1:a", "1:b"]})
        with self.assertRaisesMessage(ValidationError, "is the trail's own record (audit_trail.rehash)"):
            audit_redact(actor=None, seq=rehash.seq, reason="hide the old head")
        self.assertEqual(AuditEvent.objects.get(seq=rehash.seq).changes, {"head": ["1:a", "1:b"]})

    def test_redacting_an_event_that_does_not_exist_is_a_clear_error(self):
        with self.assertRaisesMessage(CommandError, "There is no audit event #99."):
            redact_command("99", "--reason", "secret")
        self.assertEqual(AuditEvent.objects.count(), 3)

    def test_a_redaction_needs_a_reason(self):
        with self.assertRaisesMessage(CommandError, "Give the reason for redacting an audit event."):
            redact_command("2", "--reason", "  ")
        self.assertEqual(AuditEvent.objects.get(seq=2).redacted_by_seq, None)
        self.assertEqual(AuditEvent.objects.count(), 3)

    def test_the_audit_page_shows_a_redacted_event_as_redacted(self):
        manager = member(Role.TRIAL_MANAGER, Hospital.objects.get(code="H01"))
        self.client.force_login(manager)
        self.assertContains(self.client.get(reverse("audit:event-list")), SECRET)
        audit_redact(actor=self.actor, seq=2, reason="a password was typed into a note")
        response = self.client.get(reverse("audit:event-list"))
        self.assertContains(response, "redacted (see event #4)")
        self.assertContains(response, "a password was typed into a note")
        self.assertNotContains(response, SECRET)

    def test_the_salt_goes_with_the_payload_so_the_digest_cannot_confirm_a_guess(self):
        original = {"object_repr": f"note {SECRET}", "changes": {"note": [None, SECRET]}, "reason": f"typed {SECRET}"}
        self.assertEqual(payload_digest(original, self.leak.payload_salt), self.leak.payload_digest)
        audit_redact(actor=None, seq=2, reason="secret")
        event = AuditEvent.objects.get(seq=2)
        self.assertEqual(event.payload_salt, "")
        self.assertNotEqual(payload_digest(original, event.payload_salt), event.payload_digest)


class EditsStillCaughtTests(TestCase):
    """verify_audit_trail still names every edit that is not a recorded redaction."""

    def setUp(self):
        for n in range(4):
            audit_record(actor=None, action="test.event", object_id=str(n), changes={"n": [n, n + 1]}, reason="r")
        audit_redact(actor=None, seq=2, reason="a token was pasted here")  # 5
        self.assertTrue(audit_verify().ok)

    def assert_caught(self, seq: int, words: str) -> None:
        report = audit_verify()
        self.assertFalse(report.ok)
        self.assertEqual(report.first_bad_seq, seq, report.problem)
        self.assertIn(words, report.problem)
        code, message = verify_command()
        self.assertEqual(code, 1)
        self.assertIn(f"event #{seq}", message)

    def test_a_payload_changed_without_a_redaction_is_caught(self):
        raw("UPDATE audit_auditevent SET changes = %s WHERE seq = %s", ['{"n": [0, 99]}', 3])
        self.assert_caught(3, "does not match its digest and no recorded redaction replaced it")

    def test_a_reason_changed_without_a_redaction_is_caught(self):
        raw("UPDATE audit_auditevent SET reason = %s WHERE seq = %s", ["covered up", 1])
        self.assert_caught(1, "was modified after it was written")

    def test_a_payload_edit_dressed_up_as_a_redaction_with_no_redaction_event_is_caught(self):
        raw(
            "UPDATE audit_auditevent SET changes = %s, reason = '', object_repr = '', payload_salt = '', "
            "redacted_by_seq = 99 WHERE seq = 3",
            ['{"redacted_by_event": 99}'],
        )
        self.assert_caught(3, "its redaction #99 does not exist")

    def test_a_redaction_marker_pointing_at_an_event_that_is_no_redaction_is_caught(self):
        raw(
            "UPDATE audit_auditevent SET changes = %s, reason = '', object_repr = '', payload_salt = '', "
            "redacted_by_seq = 4 WHERE seq = 3",
            ['{"redacted_by_event": 4}'],
        )
        self.assert_caught(3, "#4 is no redaction")

    def test_a_redaction_marker_pointing_at_the_redaction_of_another_event_is_caught(self):
        raw(
            "UPDATE audit_auditevent SET changes = %s, reason = '', object_repr = '', payload_salt = '', "
            "redacted_by_seq = 5 WHERE seq = 3",
            ['{"redacted_by_event": 5}'],
        )
        self.assert_caught(3, "redacted twice")

    def test_a_recorded_redaction_that_did_not_redact_is_caught(self):
        audit_record(actor=None, action="audit_event.redact", object_id="3", reason="claims a redaction")  # 6
        self.assert_caught(6, "records the redaction of event #3, which is not redacted")

    def test_a_redacted_redaction_is_caught(self):
        """Redacting the record of redaction #5 (written past the service and the trigger) erases its reason."""
        redaction_of_5 = audit_record(actor=None, action="audit_event.redact", object_id="5", reason="cover up")  # 6
        raw(
            "UPDATE audit_auditevent SET changes = %s, reason = '', object_repr = '', payload_salt = '', "
            "redacted_by_seq = %s WHERE seq = 5",
            [f'{{"redacted_by_event": {redaction_of_5.seq}}}', redaction_of_5.seq],
        )
        self.assert_caught(5, "the trail's own record (audit_event.redact), which is never redacted")

    def test_an_edited_redaction_marker_is_caught(self):
        raw("UPDATE audit_auditevent SET changes = %s WHERE seq = 2", ['{"redacted_by_event": 5, "n": [1, 2]}'])
        self.assert_caught(2, "neither the original nor a redaction marker")

    def test_a_redaction_event_whose_target_was_put_back_is_caught(self):
        raw("UPDATE audit_auditevent SET redacted_by_seq = NULL WHERE seq = 2", [])
        self.assert_caught(2, "does not match its digest")

    def test_a_changed_digest_is_caught(self):
        raw("UPDATE audit_auditevent SET payload_digest = %s WHERE seq = %s", ["0" * 64, 4])
        self.assert_caught(4, "was modified after it was written")

    def test_a_changed_digest_of_a_redacted_event_is_caught(self):
        raw("UPDATE audit_auditevent SET payload_digest = %s WHERE seq = %s", ["0" * 64, 2])
        self.assert_caught(2, "was modified after it was written")

    def test_a_changed_hash_is_caught(self):
        raw("UPDATE audit_auditevent SET hash = %s WHERE seq = %s", ["f" * 64, 4])
        self.assert_caught(4, "was modified after it was written")

    def test_a_changed_header_of_a_redacted_event_is_caught(self):
        raw("UPDATE audit_auditevent SET action = %s WHERE seq = %s", ["test.rollback", 2])
        self.assert_caught(2, "was modified after it was written")

    def test_a_deleted_event_is_caught(self):
        raw("DELETE FROM audit_auditevent WHERE seq = %s", [3])
        self.assert_caught(4, "event(s) #3..#3 were deleted")

    def test_reordered_events_are_caught(self):
        raw("UPDATE audit_auditevent SET seq = 100 WHERE seq = 3", [])
        raw("UPDATE audit_auditevent SET seq = 3 WHERE seq = 4", [])
        raw("UPDATE audit_auditevent SET seq = 4 WHERE seq = 100", [])
        self.assert_caught(3, "does not link to its predecessor")


class RedactionTriggerTests(TestCase):
    """On PostgreSQL the database itself lets exactly a recorded redaction through, once."""

    def setUp(self):
        require_postgresql()
        for n in range(3):
            audit_record(actor=None, action="test.event", changes={"n": [n, n + 1]}, reason=f"r{n}")

    def record_redaction_of(self, seq: int) -> AuditEvent:
        return audit_record(actor=None, action="audit_event.redact", object_id=str(seq), reason="by hand")

    def redact(self, seq: int, by: int, **extra: str) -> None:
        with transaction.atomic():
            AuditEvent.objects.filter(seq=seq).update(
                changes=redaction_marker(by), reason="", object_repr="", payload_salt="", redacted_by_seq=by, **extra
            )

    def test_the_service_redaction_passes_the_trigger(self):
        redaction = audit_redact(actor=None, seq=2, reason="secret")
        self.assertEqual(AuditEvent.objects.get(seq=2).redacted_by_seq, redaction.seq)

    def test_a_redaction_without_its_recorded_event_is_refused(self):
        with self.assertRaisesMessage(DatabaseError, "append-only"):
            self.redact(2, by=3)  # event #3 exists but is no redaction
        with self.assertRaisesMessage(DatabaseError, "append-only"):
            self.redact(2, by=99)
        self.assertEqual(AuditEvent.objects.get(seq=2).reason, "r1")

    def test_a_redaction_that_also_changes_the_header_is_refused(self):
        redaction = self.record_redaction_of(2)
        with self.assertRaisesMessage(DatabaseError, "append-only"):
            self.redact(2, by=redaction.seq, action="test.rollback")
        with self.assertRaisesMessage(DatabaseError, "append-only"):
            self.redact(2, by=redaction.seq, payload_digest="0" * 64)
        self.redact(2, by=redaction.seq)  # the same redaction alone passes
        self.assertEqual(AuditEvent.objects.get(seq=2).redacted_by_seq, redaction.seq)

    def test_a_redaction_that_keeps_part_of_the_payload_is_refused(self):
        redaction = self.record_redaction_of(2)
        with self.assertRaisesMessage(DatabaseError, "append-only"), transaction.atomic():
            AuditEvent.objects.filter(seq=2).update(changes=redaction_marker(redaction.seq), redacted_by_seq=4)

    def test_redacting_a_redacted_event_again_is_refused(self):
        audit_redact(actor=None, seq=2, reason="secret")
        again = self.record_redaction_of(2)
        with self.assertRaisesMessage(DatabaseError, "append-only"):
            self.redact(2, by=again.seq)

    def test_a_redaction_record_cannot_be_redacted_in_place(self):
        first = audit_redact(actor=None, seq=2, reason="secret")
        again = self.record_redaction_of(first.seq)
        with self.assertRaisesMessage(DatabaseError, "append-only"):
            self.redact(first.seq, by=again.seq)
        self.assertEqual(AuditEvent.objects.get(seq=first.seq).reason, "secret")

    def test_a_redaction_can_never_be_undone_in_place(self):
        audit_redact(actor=None, seq=2, reason="secret")
        with self.assertRaisesMessage(DatabaseError, "append-only"), transaction.atomic():
            AuditEvent.objects.filter(seq=2).update(redacted_by_seq=None, changes={"n": [1, 2]})


class ChainMigrationTests(TestCase):
    """Migration audit.0004 verifies the old chain, refuses a broken one, and rewrites a good one."""

    def setUp(self):
        require_postgresql()
        actor = UserFactory()
        hospital_create(actor=actor, code="h01", name="Hospital One")
        for n in range(3):
            audit_record(actor=actor, action="test.event", changes={"n": [n, n + 1]}, reason=f"r{n}")
        with connection.cursor() as cursor:  # settle the inserts' deferred checks before the DDL
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        self.run_migration(keyed.backwards)  # the trail as it was before 0006 (keyed)...
        self.run_migration(migration.backwards)  # ...and before 0004
        self.old_head = migration.verify_v1(AuditEvent)

    def run_migration(self, function) -> None:
        with connection.schema_editor() as editor:
            function(apps, editor)

    def test_the_old_chain_was_the_old_scheme(self):
        self.assertEqual(self.old_head[0], 4)
        self.assertEqual(set(AuditEvent.objects.values_list("payload_digest", flat=True)), {""})
        self.assertFalse(audit_verify().ok)

    def test_a_good_old_chain_is_brought_across_and_then_redactable(self):
        self.run_migration(migration.forwards)
        self.run_migration(keyed.forwards)
        report = audit_verify()
        self.assertTrue(report.ok, report.problem)
        self.assertEqual(report.checked, 6)
        self.assertEqual(AuditEvent.objects.get(seq=6).action, "audit_trail.rehash")  # 0006's own
        rehash = AuditEvent.objects.get(seq=5)
        self.assertEqual(rehash.action, "audit_trail.rehash")
        # A head kept outside the database before the migration can be found, with its new hash.
        self.assertEqual(rehash.changes["head"][0], f"4:{self.old_head[1]}")
        self.assertEqual(len(rehash.changes["head"][1]), 2 + 64)
        self.assertEqual([e.reason for e in AuditEvent.objects.filter(seq__in=[2, 3, 4])], ["r0", "r1", "r2"])
        audit_redact(actor=None, seq=3, reason="secret")  # the new trigger lets exactly this through
        self.assertTrue(audit_verify().ok)
        with self.assertRaisesMessage(DatabaseError, "append-only"), transaction.atomic():
            AuditEvent.objects.filter(seq=4).update(reason="changed")

    def test_a_broken_old_chain_is_refused_and_left_as_it_was(self):
        raw("UPDATE audit_auditevent SET reason = %s WHERE seq = %s", ["covered up", 3])
        hashes = list(AuditEvent.objects.values_list("hash", flat=True))
        with self.assertRaisesMessage(
            migration.BrokenAuditTrail,
            "Refusing to migrate the audit trail: its hash chain is broken (event #3 was modified after it was "
            "written). Nothing was changed.",
        ):
            self.run_migration(migration.forwards)
        self.assertEqual(list(AuditEvent.objects.values_list("hash", flat=True)), hashes)
        self.assertEqual(AuditEvent.objects.count(), 4)
