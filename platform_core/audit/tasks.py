"""The daily anchor of the audit trail (Celery beat: ``CELERY_BEAT_SCHEDULE`` in settings)."""

from __future__ import annotations

from typing import Any

from platform_core.tasks import project_task


@project_task(soft_time_limit=1800, max_retries=0)
def audit_anchor_daily() -> dict[str, Any]:
    """Verify the trail and write its head, signed, to object storage and the log (an error if it does not verify)."""
    from platform_core.audit.models import AuditEvent
    from platform_core.audit.services import audit_anchor, audit_anchor_latest

    if not AuditEvent.objects.exists() and audit_anchor_latest().latest is None:
        # A new installation that has recorded nothing yet: nothing to anchor (an emptied trail that was anchored
        # before is not this case: audit_anchor refuses it against that anchor).
        return {"skipped": "the audit trail is empty and was never anchored"}
    anchor = audit_anchor()
    return {"seq": anchor.seq, "hash": anchor.hash, "written_at": anchor.written_at, "name": anchor.name}
