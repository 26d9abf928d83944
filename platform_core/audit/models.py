"""The append-only, hash-chained audit trail (21 CFR 11.10(e))."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """One create/change/delete/sign/login event.

    ``seq`` numbers events 1, 2, 3... without gaps; ``hash`` covers the header fields, ``payload_digest``
    (a salted SHA-256 of ``changes``, ``reason`` and ``object_repr``) and the previous event's hash, so
    editing, inserting or deleting a row breaks the chain from that row on.
    Rows are written only by :func:`platform_core.audit.services.audit_record`. The one permitted change is
    a redaction (:func:`platform_core.audit.services.audit_redact`): the payload and its salt are replaced by
    a marker naming the ``audit_event.redact`` event that did it, the digest stays. On PostgreSQL triggers
    refuse DELETE, TRUNCATE and every UPDATE but that one.
    """

    seq = models.PositiveBigIntegerField(unique=True, editable=False)
    occurred_at = models.DateTimeField(editable=False, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_email = models.CharField(max_length=254, blank=True, help_text="As it was at the time.")
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    object_repr = models.CharField(max_length=200, blank=True)
    hospital_code = models.CharField(max_length=10, blank=True, db_index=True)
    trial_ref = models.CharField(max_length=64, blank=True, db_index=True)
    changes = models.JSONField(default=dict, blank=True, help_text="{field: [old, new]}")
    reason = models.TextField(blank=True)
    payload_digest = models.CharField(max_length=64, editable=False)
    payload_salt = models.CharField(max_length=32, blank=True, editable=False, help_text="Erased by a redaction.")
    redacted_by_seq = models.PositiveBigIntegerField(
        null=True, blank=True, editable=False, help_text="The audit_event.redact event that redacted the payload."
    )
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, unique=True, editable=False)

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_type}:{self.object_id}"

    @property
    def is_redacted(self) -> bool:
        return self.redacted_by_seq is not None


class AuditHead(models.Model):
    """The trail's last event (number and hash), one row, written in the same transaction as each event.

    Event numbers come from here, not from the events table, so a number is never given out twice: deleting
    the last events leaves the head pointing past them, and both the next event (a gap) and the verifier (a
    head with no event) show it. Database triggers refuse deleting the row and moving it backwards. Someone
    who bypasses the triggers and rewrites both is caught against the anchors kept outside the database.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    seq = models.PositiveBigIntegerField(editable=False)
    hash = models.CharField(max_length=64, editable=False)

    def __str__(self) -> str:
        return f"audit head #{self.seq}"
