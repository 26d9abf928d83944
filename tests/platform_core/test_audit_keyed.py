"""The audit chain against someone who can write to the database: keyed hashes, the head record, signed anchors.

Each tamper of issue 13 is simulated with the database's triggers bypassed (an operator with table-owner
rights): edit, delete, delete and re-hash, rewrite and re-hash, truncate the tail, empty. Each is caught.
"""

import json
import shutil
import tempfile
from io import StringIO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.test import TestCase, override_settings

from platform_core.audit.chain import GENESIS_HASH, event_hash, payload_digest
from platform_core.audit.models import AuditEvent, AuditHead
from platform_core.audit.services import (
    _fields_of,
    _payload_of,
    audit_anchor,
    audit_anchor_latest,
    audit_record,
    audit_redact,
    audit_verify,
    chain_key,
)
from tests.support import require_postgresql
from tests.support.factories import UserFactory


def verify_command(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("verify_audit_trail", *args, stdout=out, stderr=StringIO())
    except CommandError as exc:
        return 1, str(exc)
    return 0, out.getvalue()


class AnchorStorageMixin:
    """Each test gets its own anchor folder (anchors outlive the test database otherwise)."""

    def setUp(self):
        super().setUp()
        self.anchor_dir = tempfile.mkdtemp(prefix="visus-anchors-")
        storages = {
            **settings.STORAGES,
            "audit_anchors": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": self.anchor_dir, "base_url": None},
            },
        }
        self.storage_override = override_settings(STORAGES=storages)
        self.storage_override.enable()
        self.addCleanup(self.storage_override.disable)
        self.addCleanup(shutil.rmtree, self.anchor_dir, True)


class TamperMixin(AnchorStorageMixin):
    def setUp(self):
        super().setUp()
        self.actor = UserFactory()
        for n in range(5):
            audit_record(actor=self.actor, action="test.event", object_id=str(n), changes={"n": [n, n + 1]})

    def raw(self, sql: str, params: list | None = None) -> None:
        """Run SQL past the append-only triggers, as an operator with table-owner rights could."""
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute(sql, params or [])
            if connection.vendor == "postgresql":
                cursor.execute("SET LOCAL session_replication_role = origin")

    def rehash_from(self, seq: int, key: bytes) -> None:
        """Re-hash every event from ``seq`` on in place with ``key`` (and move the head along), keeping the links."""
        prev = AuditEvent.objects.get(seq=seq - 1).hash if seq > 1 else GENESIS_HASH
        for event in AuditEvent.objects.filter(seq__gte=seq).order_by("seq"):
            event.payload_digest = payload_digest(_payload_of(event), event.payload_salt)
            new_hash = event_hash(_fields_of(event), prev, key)
            self.raw(
                "UPDATE audit_auditevent SET prev_hash = %s, hash = %s, payload_digest = %s WHERE seq = %s",
                [prev, new_hash, event.payload_digest, event.seq],
            )
            prev = new_hash
        last = AuditEvent.objects.order_by("-seq").first()
        self.raw("UPDATE audit_audithead SET seq = %s, hash = %s", [last.seq if last else 0, prev])


class KeyedChainTamperTests(TamperMixin, TestCase):
    def test_an_intact_trail_verifies_and_names_its_head(self):
        code, out = verify_command()
        self.assertEqual(code, 0, out)
        self.assertIn("5 event(s) verified", out)
        head = AuditHead.objects.get()
        self.assertEqual((head.seq, head.hash), (5, AuditEvent.objects.get(seq=5).hash))

    def test_hashes_are_keyed(self):
        event = AuditEvent.objects.get(seq=3)
        self.assertEqual(event.hash, event_hash(_fields_of(event), event.prev_hash, chain_key()))
        self.assertNotEqual(event.hash, event_hash(_fields_of(event), event.prev_hash, b"another key"))

    def test_edit(self):
        self.raw("UPDATE audit_auditevent SET action = %s WHERE seq = %s", ["test.other", 2])
        code, message = verify_command()
        self.assertEqual(code, 1)
        self.assertIn("event #2 was modified", message)

    def test_delete(self):
        self.raw("DELETE FROM audit_auditevent WHERE seq = %s", [3])
        code, message = verify_command()
        self.assertEqual(code, 1)
        self.assertIn("event(s) #3..#3 were deleted", message)

    def test_delete_and_rehash_without_the_key(self):
        self.raw("DELETE FROM audit_auditevent WHERE seq = %s", [3])
        self.raw("UPDATE audit_auditevent SET seq = seq - 1 WHERE seq > %s", [3])
        self.rehash_from(3, key=b"a guess at the key")
        code, message = verify_command()
        self.assertEqual(code, 1)
        self.assertIn("event #3 was modified after it was written", message)

    def test_rewrite_and_rehash_the_whole_trail_without_the_key(self):
        self.raw("UPDATE audit_auditevent SET actor_email = %s", ["someone.else@visus.example"])
        self.rehash_from(1, key=settings.SECRET_KEY.encode())
        code, message = verify_command()
        self.assertEqual(code, 1)
        self.assertIn("event #1 was modified after it was written", message)

    def test_truncating_the_tail_is_caught_by_the_head_record(self):
        self.raw("DELETE FROM audit_auditevent WHERE seq >= %s", [4])
        code, message = verify_command()
        self.assertEqual(code, 1)
        self.assertIn("its head record names #5: event(s) #4..#5 were deleted", message)

    def test_truncating_the_tail_and_the_head_record_is_caught_by_the_anchor(self):
        anchor = audit_anchor()
        self.assertEqual(anchor.seq, 5)
        self.raw("DELETE FROM audit_auditevent WHERE seq >= %s", [4])
        event3 = AuditEvent.objects.get(seq=3)
        self.raw("UPDATE audit_audithead SET seq = %s, hash = %s", [3, event3.hash])
        self.assertTrue(audit_verify().ok)  # without the anchor nothing inside the database shows the cut
        code, message = verify_command()
        self.assertEqual(code, 1)
        self.assertIn("event #5 was anchored at", message)
        self.assertIn("event(s) #4..#5 were deleted", message)

    def test_an_emptied_trail_is_refused(self):
        self.raw("DELETE FROM audit_auditevent")
        self.raw("DELETE FROM audit_audithead")
        code, message = verify_command()
        self.assertEqual(code, 1)
        self.assertIn("the trail is empty", message)

    def test_an_emptied_trail_is_refused_against_the_anchor_even_when_empty_is_allowed(self):
        audit_anchor()
        self.raw("DELETE FROM audit_auditevent")
        self.raw("DELETE FROM audit_audithead")
        code, message = verify_command("--allow-empty")
        self.assertEqual(code, 1)
        self.assertIn("the trail ends at #0 but event #5 was anchored", message)

    def test_event_numbers_are_never_reused(self):
        self.raw("DELETE FROM audit_auditevent WHERE seq >= %s", [4])
        event = audit_record(actor=self.actor, action="test.event", object_id="after")
        self.assertEqual(event.seq, 6)
        report = audit_verify()
        self.assertFalse(report.ok)
        self.assertIn("event(s) #4..#5 were deleted", report.problem)

    def test_a_rewritten_anchor_event_is_caught(self):
        audit_anchor()
        self.raw("UPDATE audit_auditevent SET object_id = %s WHERE seq = %s", ["x", 5])
        self.rehash_from(5, key=chain_key())  # an insider with the key, but not the anchor
        code, message = verify_command()
        self.assertEqual(code, 1)
        self.assertIn("event #5 is not the one anchored at", message)


class AnchorTests(TamperMixin, TestCase):
    def test_the_anchor_is_signed_written_to_storage_and_logged(self):
        with self.assertLogs("visus.audit", "INFO") as logs:
            anchor = audit_anchor()
        self.assertEqual((anchor.seq, anchor.hash), (5, AuditEvent.objects.get(seq=5).hash))
        self.assertIn(f"Audit anchor: event #5 hash {anchor.hash}", logs.output[0])
        scan = audit_anchor_latest()
        self.assertEqual(scan.latest, anchor)
        self.assertEqual(scan.forged, [])
        code, out = verify_command()
        self.assertEqual(code, 0, out)
        self.assertIn("against the anchor of", out)

    def test_a_forged_anchor_is_refused(self):
        anchor = audit_anchor()
        path = f"{self.anchor_dir}/{anchor.name}"
        with open(path) as handle:
            data = json.load(handle)
        data["seq"] = 3
        with open(path, "w") as handle:
            json.dump(data, handle)
        code, message = verify_command()
        self.assertEqual(code, 1)
        self.assertIn(f"{anchor.name} fail their signature", message)
        with self.assertRaisesMessage(ValidationError, "fail their signature"):
            audit_anchor()

    def test_no_anchor_is_written_for_a_broken_trail(self):
        self.raw("UPDATE audit_auditevent SET reason = %s WHERE seq = %s", ["covered up", 2])
        with self.assertRaisesMessage(ValidationError, "does not verify"):
            audit_anchor()
        self.assertIsNone(audit_anchor_latest().latest)

    def test_verify_with_anchor_writes_one_and_the_next_check_uses_it(self):
        code, out = verify_command("--anchor")
        self.assertEqual(code, 0, out)
        self.assertIn("Anchor written:", out)
        self.assertEqual(audit_anchor_latest().latest.seq, 5)

    def test_the_daily_task_writes_an_anchor(self):
        from platform_core.audit.tasks import audit_anchor_daily

        result = audit_anchor_daily.apply().get()
        self.assertEqual(result["seq"], 5)
        self.assertIn("audit-anchor-daily", settings.CELERY_BEAT_SCHEDULE)

    def test_redaction_keeps_the_trail_verifiable_against_the_anchor(self):
        audit_anchor()
        audit_redact(actor=self.actor, seq=2, reason="a secret landed here")
        code, out = verify_command()
        self.assertEqual(code, 0, out)
        self.assertIn("1 redacted", out)


class HeadTriggerTests(AnchorStorageMixin, TestCase):
    def setUp(self):
        super().setUp()
        require_postgresql()
        audit_record(actor=None, action="test.event")
        audit_record(actor=None, action="test.event")

    def test_the_head_cannot_move_back(self):
        with self.assertRaisesMessage(DatabaseError, "only moves forward"), transaction.atomic():
            AuditHead.objects.update(seq=1)
        self.assertEqual(AuditHead.objects.get().seq, 2)

    def test_the_head_cannot_be_deleted_or_truncated(self):
        with self.assertRaisesMessage(DatabaseError, "only moves forward"), transaction.atomic():
            AuditHead.objects.all().delete()
        with self.assertRaisesMessage(DatabaseError, "only moves forward"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute("TRUNCATE audit_audithead")
        self.assertEqual(AuditHead.objects.get().seq, 2)


SQLITE_SCRIPT = """
import sqlite3, django
django.setup()
from django.conf import settings
from django.db import connection
from platform_core.audit.services import audit_record, audit_redact, audit_verify
from platform_core.audit.vocabulary import register_actions
register_actions("sqlite-check", {"check.event": "a test event"})
first, second, third = (
    audit_record(actor=None, action="check.event", object_id=str(n), reason=f"note {n}").seq for n in range(3)
)
redaction = audit_redact(actor=None, seq=second, reason="a secret landed here").seq
print("verified", audit_verify().ok)
raw = sqlite3.connect(settings.DATABASES["default"]["NAME"])
for sql in (
    f"DELETE FROM audit_auditevent WHERE seq = {third}",
    f"UPDATE audit_auditevent SET reason = 'covered up' WHERE seq = {first}",
    # a redaction marker pointing at a redaction event that redacted another event
    f"UPDATE audit_auditevent SET redacted_by_seq = {redaction}, changes = '{{\\"redacted_by_event\\": {redaction}}}', "
    f"reason = '', object_repr = '', payload_salt = '' WHERE seq = {third}",
    "UPDATE audit_audithead SET seq = 1",
    "DELETE FROM audit_audithead",
):
    try:
        raw.execute(sql)
        raw.commit()
        print("ALLOWED", sql)
    except sqlite3.DatabaseError as exc:
        print("refused:", exc)
print("verified", audit_verify().ok)
"""


class SqliteTriggerTests(TestCase):
    """The embedded default (SQLite) is append-only too, and keeps its files private."""

    def test_sqlite_refuses_edits_and_deletes_but_lets_a_recorded_redaction_through(self):
        import os
        import stat
        import subprocess
        import sys

        from tests.support import ROOT

        data_dir = tempfile.mkdtemp(prefix="visus-sqlite-")
        os.chmod(data_dir, 0o755)  # noqa: S103 - as a fresh checkout's var/ would be
        self.addCleanup(shutil.rmtree, data_dir, True)
        env = {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}}
        env.update({"DJANGO_ENV": "development", "VISUS_DATA_DIR": data_dir})
        migrate = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        self.assertEqual(migrate.returncode, 0, migrate.stdout + migrate.stderr)
        result = subprocess.run(
            [sys.executable, "-c", SQLITE_SCRIPT],
            cwd=ROOT,
            env={**env, "DJANGO_SETTINGS_MODULE": "platform_core.settings"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.splitlines()
        self.assertEqual(lines[0], "verified True")
        self.assertEqual(lines[-1], "verified True")
        refusals = [line for line in lines if line.startswith("refused:")]
        self.assertEqual(len(refusals), 5, result.stdout)
        self.assertNotIn("ALLOWED", result.stdout)
        self.assertIn("append-only: DELETE refused", refusals[0])
        self.assertIn("only moves forward", refusals[3])
        # Owner-only: the folder 0700, the database and the keys 0600.
        self.assertEqual(stat.S_IMODE(os.stat(data_dir).st_mode), 0o700)
        for name in ("visus.sqlite3", "secret_key", "audit_chain_key"):
            self.assertEqual(stat.S_IMODE(os.stat(f"{data_dir}/{name}").st_mode), 0o600, name)


class KeyedChainMigrationTests(AnchorStorageMixin, TestCase):
    """Migration audit.0006 refuses a broken unkeyed chain and re-keys a good one."""

    def setUp(self):
        super().setUp()
        require_postgresql()
        import importlib

        from django.apps import apps

        self.apps = apps
        self.migration = importlib.import_module("platform_core.audit.migrations.0006_audit_keyed_chain")
        for n in range(3):
            audit_record(actor=None, action="test.event", reason=f"r{n}")
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        self.run_migration(self.migration.backwards)

    def run_migration(self, function) -> None:
        with connection.schema_editor() as editor:
            function(self.apps, editor)

    def test_a_good_unkeyed_chain_is_rekeyed_with_a_bridge_event(self):
        self.assertFalse(audit_verify().ok)  # unkeyed: the keyed verifier refuses it
        self.run_migration(self.migration.forwards)
        report = audit_verify()
        self.assertTrue(report.ok, report.problem)
        bridge = AuditEvent.objects.get(seq=4)
        self.assertEqual(bridge.action, "audit_trail.rehash")
        self.assertEqual(AuditHead.objects.get().seq, 4)

    def test_a_broken_unkeyed_chain_is_refused(self):
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute("UPDATE audit_auditevent SET reason = 'covered up' WHERE seq = 2")
            cursor.execute("SET LOCAL session_replication_role = origin")
        with self.assertRaisesMessage(Exception, "Refusing to migrate the audit trail"):
            self.run_migration(self.migration.forwards)


class DailyAnchorOnAnEmptyTrailTests(AnchorStorageMixin, TestCase):
    def test_a_new_installation_is_skipped_but_an_emptied_anchored_trail_is_an_error(self):
        from platform_core.audit.tasks import audit_anchor_daily

        self.assertEqual(
            audit_anchor_daily.apply().get(), {"skipped": "the audit trail is empty and was never anchored"}
        )
        audit_record(actor=None, action="test.event")
        self.assertEqual(audit_anchor_daily.apply().get()["seq"], 1)
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute("DELETE FROM audit_auditevent")
            cursor.execute("DELETE FROM audit_audithead")
            cursor.execute("SET LOCAL session_replication_role = origin")
        result = audit_anchor_daily.apply()
        self.assertTrue(result.failed())
        self.assertIn("does not verify", str(result.result))
