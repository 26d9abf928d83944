"""The chain covers a salted digest of each event's payload, so that a payload can be redacted.

Before: each event's hash covered all its fields, ``changes``, ``reason`` and ``object_repr`` included, so a
secret that reached the trail could not be removed without breaking the chain. After: the hash covers the
header and ``payload_digest`` = SHA-256(salt, payload); a redaction replaces the payload and the salt by a
marker and leaves digest and hash alone.

This migration verifies the existing chain under the old scheme first and refuses to touch a broken one. It
then rewrites every event's digest, salt and hash under the new scheme (every hash changes, so it appends an
``audit_trail.rehash`` event naming the old head and its new hash: a head kept outside the database from
before the migration can be matched there), and replaces the UPDATE trigger by one that lets only a recorded
redaction through (DELETE and TRUNCATE stay refused).

The hashing here is a frozen copy (a migration must not change when the code does).
"""

import datetime as dt
import decimal
import hashlib
import json
import secrets
import uuid
from collections.abc import Mapping

from django.db import migrations, models
from django.utils import timezone

GENESIS_HASH = "0" * 64
V1_FIELDS = (
    "seq",
    "occurred_at",
    "actor_id",
    "actor_email",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "hospital_code",
    "trial_ref",
    "changes",
    "reason",
)
V2_FIELDS = (
    "seq",
    "occurred_at",
    "actor_id",
    "actor_email",
    "action",
    "object_type",
    "object_id",
    "hospital_code",
    "trial_ref",
    "payload_digest",
)
V2_PAYLOAD = ("object_repr", "changes", "reason")
BATCH = 1000

GUARD_FUNCTION = """
CREATE OR REPLACE FUNCTION visus_audit_redact_only() RETURNS trigger AS $$
BEGIN
    IF OLD.redacted_by_seq IS NULL
       AND NEW.redacted_by_seq IS NOT NULL
       AND (to_jsonb(NEW) - 'changes' - 'reason' - 'object_repr' - 'payload_salt' - 'redacted_by_seq')
           = (to_jsonb(OLD) - 'changes' - 'reason' - 'object_repr' - 'payload_salt' - 'redacted_by_seq')
       AND NEW.changes = jsonb_build_object('redacted_by_event', NEW.redacted_by_seq)
       AND NEW.reason = '' AND NEW.object_repr = '' AND NEW.payload_salt = ''
       AND EXISTS (
           SELECT 1 FROM audit_auditevent r
           WHERE r.seq = NEW.redacted_by_seq AND r.seq > OLD.seq
             AND r.action = 'audit_event.redact' AND r.object_id = OLD.seq::text
       )
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_auditevent is append-only: % refused (only a recorded redaction may replace a payload, once)',
        TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""
NEW_TRIGGERS = """
CREATE TRIGGER audit_auditevent_no_delete
    BEFORE DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION visus_audit_append_only();
CREATE TRIGGER audit_auditevent_redact_only
    BEFORE UPDATE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION visus_audit_redact_only();
"""
DROP_NEW_TRIGGERS = """
DROP TRIGGER IF EXISTS audit_auditevent_no_delete ON audit_auditevent;
DROP TRIGGER IF EXISTS audit_auditevent_redact_only ON audit_auditevent;
"""
OLD_TRIGGER = """
CREATE TRIGGER audit_auditevent_append_only
    BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION visus_audit_append_only();
"""
DROP_OLD_TRIGGER = "DROP TRIGGER IF EXISTS audit_auditevent_append_only ON audit_auditevent;"


class BrokenAuditTrail(RuntimeError):
    pass


def json_safe(value):  # noqa: ANN001, ANN201 - frozen copy of platform_core.audit.chain.json_safe
    if value is None or isinstance(value, bool | int | str | float):
        return value
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [json_safe(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    return str(value)


def sha256_json(data) -> str:  # noqa: ANN001
    text = json.dumps(json_safe(data), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def v1_hash(event, prev_hash: str) -> str:  # noqa: ANN001
    return sha256_json({"fields": {name: getattr(event, name) for name in V1_FIELDS}, "prev": prev_hash})


def v2_digest(event) -> str:  # noqa: ANN001
    return sha256_json({"payload": {name: getattr(event, name) for name in V2_PAYLOAD}, "salt": event.payload_salt})


def v2_hash(event, prev_hash: str) -> str:  # noqa: ANN001
    return sha256_json({"fields": {name: getattr(event, name) for name in V2_FIELDS}, "prev": prev_hash})


def _events(AuditEvent):  # noqa: ANN001, ANN202, N803
    return AuditEvent.objects.order_by("seq").iterator(chunk_size=BATCH)


def verify_v1(AuditEvent) -> tuple[int, str] | None:  # noqa: ANN001, N803
    """The old chain's head, or BrokenAuditTrail naming its first bad event."""
    prev, expected = GENESIS_HASH, 1
    for event in _events(AuditEvent):
        if event.seq != expected:
            problem = f"event(s) #{expected}..#{event.seq - 1} are missing"
        elif event.prev_hash != prev:
            problem = f"event #{event.seq} does not link to its predecessor"
        elif v1_hash(event, prev) != event.hash:
            problem = f"event #{event.seq} was modified after it was written"
        else:
            prev, expected = event.hash, expected + 1
            continue
        raise BrokenAuditTrail(
            f"Refusing to migrate the audit trail: its hash chain is broken ({problem}). Nothing was changed. "
            "Investigate with `python manage.py verify_audit_trail` on the previous release and restore the trail "
            "from a backup before migrating again."
        )
    return (expected - 1, prev) if expected > 1 else None


def verify_v2(AuditEvent) -> None:  # noqa: ANN001, N803
    prev, expected = GENESIS_HASH, 1
    for event in _events(AuditEvent):
        if event.redacted_by_seq is not None:
            raise BrokenAuditTrail(
                f"Cannot go back to the old audit chain: event #{event.seq} was redacted, and the old scheme "
                "hashed the payload itself."
            )
        if event.seq != expected or event.prev_hash != prev or v2_hash(event, prev) != event.hash:
            raise BrokenAuditTrail(f"Refusing to migrate the audit trail back: its chain is broken at #{event.seq}.")
        if v2_digest(event) != event.payload_digest:
            raise BrokenAuditTrail(f"Refusing to migrate the audit trail back: event #{event.seq} was modified.")
        prev, expected = event.hash, expected + 1


def _rewrite(AuditEvent, rehash) -> str:  # noqa: ANN001, N803
    """Rehash every event in order with ``rehash(event, prev_hash)``; returns the new head's hash."""
    prev = GENESIS_HASH
    batch = []
    for event in _events(AuditEvent):
        rehash(event, prev)
        prev = event.hash
        batch.append(event)
        if len(batch) >= BATCH:
            AuditEvent.objects.bulk_update(batch, ["payload_salt", "payload_digest", "prev_hash", "hash"])
            batch = []
    if batch:
        AuditEvent.objects.bulk_update(batch, ["payload_salt", "payload_digest", "prev_hash", "hash"])
    return prev


def _to_v2(event, prev: str) -> None:  # noqa: ANN001
    event.payload_salt = secrets.token_hex(16)
    event.payload_digest = v2_digest(event)
    event.prev_hash = prev
    event.hash = v2_hash(event, prev)


def _to_v1(event, prev: str) -> None:  # noqa: ANN001
    event.payload_salt = ""
    event.payload_digest = ""
    event.prev_hash = prev
    event.hash = v1_hash(event, prev)


def forwards(apps, schema_editor) -> None:  # noqa: ANN001
    AuditEvent = apps.get_model("audit", "AuditEvent")  # noqa: N806
    old_head = verify_v1(AuditEvent)
    postgresql = schema_editor.connection.vendor == "postgresql"
    if postgresql:
        schema_editor.execute(DROP_OLD_TRIGGER, params=None)
    new_head = _rewrite(AuditEvent, _to_v2)
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
            reason="migration audit.0004: the chain now covers a digest of each event's payload (redactable)",
            payload_salt=secrets.token_hex(16),
            prev_hash=new_head,
        )
        event.payload_digest = v2_digest(event)
        event.hash = v2_hash(event, new_head)
        event.save(force_insert=True)
    if postgresql:
        schema_editor.execute(GUARD_FUNCTION, params=None)
        schema_editor.execute(NEW_TRIGGERS, params=None)


def backwards(apps, schema_editor) -> None:  # noqa: ANN001
    AuditEvent = apps.get_model("audit", "AuditEvent")  # noqa: N806
    verify_v2(AuditEvent)
    postgresql = schema_editor.connection.vendor == "postgresql"
    if postgresql:
        schema_editor.execute(DROP_NEW_TRIGGERS, params=None)
        schema_editor.execute("DROP FUNCTION IF EXISTS visus_audit_redact_only();", params=None)
    _rewrite(AuditEvent, _to_v1)
    if postgresql:
        schema_editor.execute(OLD_TRIGGER, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_refuse_truncate")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="payload_digest",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="payload_salt",
            field=models.CharField(blank=True, editable=False, help_text="Erased by a redaction.", max_length=32),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="redacted_by_seq",
            field=models.PositiveBigIntegerField(
                blank=True,
                editable=False,
                help_text="The audit_event.redact event that redacted the payload.",
                null=True,
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
