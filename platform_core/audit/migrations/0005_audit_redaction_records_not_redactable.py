"""On PostgreSQL, the trigger that lets a recorded redaction through now refuses to redact the trail's own
records: an ``audit_event.redact`` event (redacting it would erase who redacted what and why) and the
``audit_trail.rehash`` event of migration 0004 (the bridge to a head kept from before it).
"""

import importlib

from django.db import migrations

PREVIOUS = importlib.import_module("platform_core.audit.migrations.0004_audit_payload_digest")

GUARD_FUNCTION = """
CREATE OR REPLACE FUNCTION visus_audit_redact_only() RETURNS trigger AS $$
BEGIN
    IF OLD.redacted_by_seq IS NULL
       AND NEW.redacted_by_seq IS NOT NULL
       AND OLD.action NOT IN ('audit_event.redact', 'audit_trail.rehash')
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


def forwards(apps, schema_editor) -> None:  # noqa: ANN001
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(GUARD_FUNCTION, params=None)


def backwards(apps, schema_editor) -> None:  # noqa: ANN001
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PREVIOUS.GUARD_FUNCTION, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_audit_payload_digest")]
    operations = [migrations.RunPython(forwards, backwards)]
