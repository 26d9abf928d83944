"""Writing and verifying the audit trail. Services call :func:`audit_record`; nothing else writes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from platform_core.audit.chain import GENESIS_HASH, event_hash, json_safe
from platform_core.audit.models import AuditEvent

# An arbitrary constant: the key of the PostgreSQL advisory lock that serialises appends.
_CHAIN_LOCK_KEY = 0x56495355  # "VISU"

HASHED_FIELDS = (
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


def _fields_of(event: AuditEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in HASHED_FIELDS}


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])
    # SQLite: Visus opens write transactions with BEGIN IMMEDIATE, which already serialises writers.


def diff(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{field: [old, new]}`` for the fields whose value changed (all of ``new`` when ``old`` is None)."""
    old = old or {}
    return {
        key: [json_safe(old.get(key)), json_safe(value)]
        for key, value in new.items()
        if key not in old or json_safe(old.get(key)) != json_safe(value)
    }


def snapshot(instance: models.Model, fields: Iterable[str]) -> dict[str, Any]:
    """The current values of ``fields`` on a model instance, JSON-safe, for ``diff``."""
    values = {}
    for name in fields:
        field = instance._meta.get_field(name)
        if not isinstance(field, models.Field):
            raise ValueError(f"{name} is a reverse relation of {type(instance).__name__}, not one of its fields")
        values[name] = json_safe(getattr(instance, field.attname))
    return values


@transaction.atomic
def audit_record(
    *,
    actor: Any,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    changes: Mapping[str, Any] | None = None,
    reason: str = "",
    hospital_code: str = "",
    trial_ref: str = "",
) -> AuditEvent:
    """Append one event to the chain. Call it inside the transaction of the change it records."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)[:200]
    actor_obj = actor if getattr(actor, "is_authenticated", False) else None
    _lock_chain()
    last = AuditEvent.objects.order_by("-seq").only("seq", "hash").first()
    event = AuditEvent(
        seq=(last.seq + 1) if last else 1,
        occurred_at=timezone.now(),
        actor=actor_obj,
        actor_email=actor_obj.email if actor_obj else "",
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr[:200],
        hospital_code=hospital_code,
        trial_ref=trial_ref,
        changes=json_safe(dict(changes or {})),
        reason=reason,
        prev_hash=last.hash if last else GENESIS_HASH,
    )
    event.hash = event_hash(_fields_of(event), event.prev_hash)
    event.save(force_insert=True)
    return event


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""
    head: tuple[int, str] | None = None  # (seq, hash) of the last event, to keep outside the database


def audit_verify(*, batch_size: int = 2000, expect_head: tuple[int, str] | None = None) -> ChainReport:
    """Recompute the whole chain. Reports the first event whose content, link or number is wrong.

    The chain alone cannot show that its last events were deleted. ``expect_head`` is an event (seq, hash)
    recorded earlier outside the database (the previous run's head): it must still be in the chain unchanged.
    """
    expected_seq = 1
    prev_hash = GENESIS_HASH
    checked = 0
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=batch_size):
        if event.seq != expected_seq:
            return ChainReport(
                False,
                checked,
                event.seq,
                f"event #{event.seq} follows #{expected_seq - 1}: event(s) #{expected_seq}"
                f"..#{event.seq - 1} were deleted",
            )
        if event.prev_hash != prev_hash:
            return ChainReport(False, checked, event.seq, f"event #{event.seq} does not link to its predecessor")
        # Re-read JSON through json_safe so the stored value is hashed exactly as it was written.
        fields = _fields_of(event)
        if event_hash(fields, event.prev_hash) != event.hash:
            return ChainReport(False, checked, event.seq, f"event #{event.seq} was modified after it was written")
        if expect_head is not None and event.seq == expect_head[0] and event.hash != expect_head[1]:
            return ChainReport(False, checked, event.seq, f"event #{event.seq} is not the one recorded earlier")
        prev_hash = event.hash
        expected_seq += 1
        checked += 1
    if expect_head is not None and checked < expect_head[0]:
        return ChainReport(
            False,
            checked,
            checked + 1,
            f"the trail ends at #{checked} but event #{expect_head[0]} was recorded earlier: "
            f"event(s) #{checked + 1}..#{expect_head[0]} were deleted",
        )
    return ChainReport(True, checked, head=(checked, prev_hash) if checked else None)
