"""The chain is keyed (HMAC-SHA256 under ``VISUS_AUDIT_KEY``, kept outside the database), event numbers come from a
head record that never moves backwards, and SQLite (the embedded default) gets append-only triggers too.

Before: each event's hash was a plain SHA-256, so anyone with database write access could edit events and re-hash
the chain; deleting the last events was invisible and the next event reused their numbers. After: re-hashing
needs the key; the head record keeps the last number and hash (triggers refuse deleting it or moving it back).

This migration verifies the existing chain under the old scheme first and refuses to touch a broken one. It then
re-hashes every event under the key (digests and salts stay: a redacted event stays redacted) and appends an
``audit_trail.rehash`` event naming the old head and its new hash, so a head kept outside the database from
before can be matched. The hashing here is a frozen copy (a migration must not change when the code does).
"""

import hashlib
import hmac
import importlib
import json
import secrets

from django.conf import settings
from django.db import migrations, models
from django.utils import timezone

V2 = importlib.import_module("platform_core.audit.migrations.0004_audit_payload_digest")
GENESIS_HASH = "0" * 64
BATCH = 1000

PG_DROP_EVENT_UPDATE_TRIGGER = "DROP TRIGGER IF EXISTS audit_auditevent_redact_only ON audit_auditevent;"
PG_EVENT_UPDATE_TRIGGER = """
CREATE TRIGGER audit_auditevent_redact_only
    BEFORE UPDATE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION visus_audit_redact_only();
"""
PG_HEAD_TRIGGERS = """
CREATE OR REPLACE FUNCTION visus_audit_head_forward_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.seq > OLD.seq THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_audithead only moves forward: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_audithead_forward_only
    BEFORE UPDATE OR DELETE ON audit_audithead
    FOR EACH ROW EXECUTE FUNCTION visus_audit_head_forward_only();
CREATE TRIGGER audit_audithead_no_truncate
    BEFORE TRUNCATE ON audit_audithead
    FOR EACH STATEMENT EXECUTE FUNCTION visus_audit_head_forward_only();
"""
PG_DROP_HEAD_TRIGGERS = """
DROP TRIGGER IF EXISTS audit_audithead_forward_only ON audit_audithead;
DROP TRIGGER IF EXISTS audit_audithead_no_truncate ON audit_audithead;
DROP FUNCTION IF EXISTS visus_audit_head_forward_only();
"""
# SQLite: the same rules as PostgreSQL's triggers (append-only; the one UPDATE allowed is a recorded redaction,
# never of the trail's own records; the head only moves forward). Django stores JSON with json.dumps' spacing.
SQLITE_TRIGGERS = [
    """
CREATE TRIGGER audit_auditevent_no_delete BEFORE DELETE ON audit_auditevent
BEGIN SELECT RAISE(ABORT, 'audit_auditevent is append-only: DELETE refused'); END;
""",
    """
CREATE TRIGGER audit_auditevent_redact_only BEFORE UPDATE ON audit_auditevent
WHEN NOT (
    OLD.redacted_by_seq IS NULL AND NEW.redacted_by_seq IS NOT NULL
    AND OLD.action NOT IN ('audit_event.redact', 'audit_trail.rehash')
    AND NEW.id = OLD.id AND NEW.seq = OLD.seq AND NEW.occurred_at IS OLD.occurred_at
    AND NEW.actor_id IS OLD.actor_id AND NEW.actor_email = OLD.actor_email AND NEW.action = OLD.action
    AND NEW.object_type = OLD.object_type AND NEW.object_id = OLD.object_id
    AND NEW.hospital_code = OLD.hospital_code AND NEW.trial_ref = OLD.trial_ref
    AND NEW.payload_digest = OLD.payload_digest AND NEW.prev_hash = OLD.prev_hash AND NEW.hash = OLD.hash
    AND NEW.changes = '{"redacted_by_event": ' || NEW.redacted_by_seq || '}'
    AND NEW.reason = '' AND NEW.object_repr = '' AND NEW.payload_salt = ''
    AND EXISTS (
        SELECT 1 FROM audit_auditevent r
        WHERE r.seq = NEW.redacted_by_seq AND r.seq > OLD.seq
          AND r.action = 'audit_event.redact' AND r.object_id = CAST(OLD.seq AS TEXT)
    )
)
BEGIN SELECT RAISE(ABORT, 'audit_auditevent is append-only: UPDATE refused (only a recorded redaction may replace a payload, once)'); END;
""",
    """
CREATE TRIGGER audit_audithead_no_delete BEFORE DELETE ON audit_audithead
BEGIN SELECT RAISE(ABORT, 'audit_audithead only moves forward: DELETE refused'); END;
""",
    """
CREATE TRIGGER audit_audithead_forward_only BEFORE UPDATE ON audit_audithead
WHEN NOT (NEW.id = OLD.id AND NEW.seq > OLD.seq)
BEGIN SELECT RAISE(ABORT, 'audit_audithead only moves forward: UPDATE refused'); END;
""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS audit_auditevent_no_delete;",
    "DROP TRIGGER IF EXISTS audit_auditevent_redact_only;",
    "DROP TRIGGER IF EXISTS audit_audithead_no_delete;",
    "DROP TRIGGER IF EXISTS audit_audithead_forward_only;",
]


def _key() -> bytes:
    key = str(getattr(settings, "AUDIT_CHAIN_KEY", ""))
    if not key:
        raise RuntimeError("Set VISUS_AUDIT_KEY before migrating: the audit chain is keyed with it.")
    return key.encode("utf-8")


def v3_hash(event, prev_hash: str, key: bytes) -> str:  # noqa: ANN001
    fields = {name: getattr(event, name) for name in V2.V2_FIELDS}
    text = json.dumps(
        V2.json_safe({"fields": fields, "prev": prev_hash}), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return hmac.new(key, text.encode("ascii"), hashlib.sha256).hexdigest()


def verify(AuditEvent, hash_of) -> tuple[int, str] | None:  # noqa: ANN001, N803
    """The chain's head under ``hash_of``, or BrokenAuditTrail naming its first bad event."""
    prev, expected = GENESIS_HASH, 1
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=BATCH):
        if event.seq != expected:
            problem = f"event(s) #{expected}..#{event.seq - 1} are missing"
        elif event.prev_hash != prev or hash_of(event, prev) != event.hash:
            problem = f"event #{event.seq} was modified after it was written or does not link to its predecessor"
        elif event.redacted_by_seq is None and V2.v2_digest(event) != event.payload_digest:
            problem = f"event #{event.seq}'s payload does not match its digest"
        else:
            prev, expected = event.hash, expected + 1
            continue
        raise V2.BrokenAuditTrail(
            f"Refusing to migrate the audit trail: its hash chain is broken ({problem}). Nothing was changed. "
            "Investigate with `python manage.py verify_audit_trail` on the previous release and restore the trail "
            "from a backup before migrating again."
        )
    return (expected - 1, prev) if expected > 1 else None


def rewrite(AuditEvent, hash_of) -> str:  # noqa: ANN001, N803
    prev = GENESIS_HASH
    batch = []
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=BATCH):
        event.prev_hash = prev
        event.hash = hash_of(event, prev)
        prev = event.hash
        batch.append(event)
        if len(batch) >= BATCH:
            AuditEvent.objects.bulk_update(batch, ["prev_hash", "hash"])
            batch = []
    if batch:
        AuditEvent.objects.bulk_update(batch, ["prev_hash", "hash"])
    return prev


def forwards(apps, schema_editor) -> None:  # noqa: ANN001
    AuditEvent = apps.get_model("audit", "AuditEvent")  # noqa: N806
    AuditHead = apps.get_model("audit", "AuditHead")  # noqa: N806
    key = _key()
    vendor = schema_editor.connection.vendor
    old_head = verify(AuditEvent, V2.v2_hash)
    if vendor == "postgresql":
        schema_editor.execute(PG_DROP_EVENT_UPDATE_TRIGGER, params=None)
    new_head = rewrite(AuditEvent, lambda event, prev: v3_hash(event, prev, key))
    if old_head is not None:
        seq, old_hash = old_head
        event = AuditEvent(
            seq=seq + 1,
            occurred_at=timezone.now(),
            actor=None,
            actor_email="",
            action="audit_trail.rehash",
            object_type="audit.auditevent",
            object_id=str(seq),
            object_repr=f"audit trail up to event #{seq}",
            hospital_code="",
            trial_ref="",
            changes={"head": [f"{seq}:{old_hash}", f"{seq}:{new_head}"]},
            reason="migration audit.0006: the chain is keyed with VISUS_AUDIT_KEY (HMAC-SHA256)",
            payload_salt=secrets.token_hex(16),
            prev_hash=new_head,
        )
        event.payload_digest = V2.v2_digest(event)
        event.hash = v3_hash(event, new_head, key)
        event.save(force_insert=True)
        AuditHead.objects.update_or_create(id=1, defaults={"seq": event.seq, "hash": event.hash})
    if vendor == "postgresql":
        schema_editor.execute(PG_EVENT_UPDATE_TRIGGER, params=None)
        schema_editor.execute(PG_HEAD_TRIGGERS, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_TRIGGERS:
            schema_editor.execute(statement, params=None)


def backwards(apps, schema_editor) -> None:  # noqa: ANN001
    AuditEvent = apps.get_model("audit", "AuditEvent")  # noqa: N806
    key = _key()
    vendor = schema_editor.connection.vendor
    verify(AuditEvent, lambda event, prev: v3_hash(event, prev, key))
    if vendor == "postgresql":
        schema_editor.execute(PG_DROP_HEAD_TRIGGERS, params=None)
        schema_editor.execute(PG_DROP_EVENT_UPDATE_TRIGGER, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_DROP:
            schema_editor.execute(statement, params=None)
    apps.get_model("audit", "AuditHead").objects.all().delete()
    rewrite(AuditEvent, V2.v2_hash)
    if vendor == "postgresql":
        schema_editor.execute(PG_EVENT_UPDATE_TRIGGER, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_audit_redaction_records_not_redactable")]

    operations = [
        migrations.CreateModel(
            name="AuditHead",
            fields=[
                (
                    "id",
                    models.PositiveSmallIntegerField(default=1, editable=False, primary_key=True, serialize=False),
                ),
                ("seq", models.PositiveBigIntegerField(editable=False)),
                ("hash", models.CharField(editable=False, max_length=64)),
            ],
        ),
        migrations.RunPython(forwards, backwards),
    ]
