"""Writing and verifying the audit trail. Services call :func:`audit_record`; nothing else writes."""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import connection, models, transaction
from django.utils import timezone

from platform_core import limits
from platform_core.accounts.selectors import hospitals_for
from platform_core.audit.chain import (
    GENESIS_HASH,
    anchor_signature,
    event_hash,
    json_safe,
    payload_digest,
    signatures_match,
)
from platform_core.audit.models import AuditEvent, AuditHead
from platform_core.audit.selectors import AUDIT_ROLES
from platform_core.audit.vocabulary import auditable_fields, is_secret_name, read_path, require_action

# An arbitrary constant: the key of the PostgreSQL advisory lock that serialises appends.
_CHAIN_LOCK_KEY = 0x56495355  # "VISU"

# The chain hashes these header fields and the payload's digest...
HASHED_FIELDS = (
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
# ...and the digest covers these free-text fields, which a redaction replaces.
PAYLOAD_FIELDS = ("object_repr", "changes", "reason")
REDACT_ACTION = "audit_event.redact"
REHASH_ACTION = "audit_trail.rehash"
# The trail's own records of a redaction and of a rehash are never redacted: the first keeps who redacted what
# and why, the second bridges a head kept from before migration audit.0004. Neither holds trial data.
UNREDACTABLE_ACTIONS = (REDACT_ACTION, REHASH_ACTION)
REDACTION_MARKER_KEY = "redacted_by_event"

ANCHOR_FOLDER = ""  # anchors lie at the top of their own storage (STORAGES["audit_anchors"])

M = TypeVar("M", bound=models.Model)
logger = logging.getLogger("visus.audit")


def chain_key() -> bytes:
    """The key of the chain's HMAC, kept outside the database (``VISUS_AUDIT_KEY``; settings refuse a weak one)."""
    key = str(getattr(settings, "AUDIT_CHAIN_KEY", ""))
    if not key:
        raise RuntimeError("AUDIT_CHAIN_KEY is not set: Visus cannot write or check the audit trail without it.")
    return key.encode("utf-8")


class SecretInAuditPayload(ValueError):
    """A payload key that names a secret: refused, so that no password or token reaches the trail."""


def _fields_of(event: AuditEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in HASHED_FIELDS}


def _payload_of(event: AuditEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in PAYLOAD_FIELDS}


def redaction_marker(redaction_seq: int) -> dict[str, int]:
    """What a redacted event's ``changes`` hold instead of its payload."""
    return {REDACTION_MARKER_KEY: redaction_seq}


def audit_chain_lock() -> None:
    """Hold the audit chain's lock until the transaction ends, as every audited change does from its first event
    on (taking it again is free). A change that must see every concurrent audited change either committed before
    it reads, or waiting for its own commit, takes it before reading (``reading.queue.queue_lock``)."""
    _lock_chain()


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
        values[name] = json_safe(getattr(instance, getattr(field, "attname", name)))
    return values


def audit_snapshot(instance: models.Model) -> dict[str, Any]:
    """The values of the model's declared auditable fields (its app's auditing.py), JSON-safe.

    Take it before changing an existing row and give it to :func:`audited_save` as ``before``.
    """
    return {f.name: json_safe(read_path(instance, f.path)) for f in auditable_fields(instance._meta.label)}


@transaction.atomic
def audited_save(
    instance: M,
    *,
    actor: Any,
    action: str,
    before: Mapping[str, Any] | None = None,
    reason: str = "",
    trial_ref: str = "",
    hospital_code: str = "",
    update_fields: Iterable[str] | None = None,
    extra_changes: Mapping[str, list[Any]] | None = None,
    force_insert: bool = False,
) -> AuditEvent:
    """Save, then record the event: ``full_clean()`` (of the ``update_fields`` only, when given: unchanged
    foreign keys and constraints on unchanged fields are not looked up again), save, and record the declared
    auditable fields that changed (all of them for a new row), plus ``extra_changes`` (``{key: [old, new]}``, for
    facts that are not fields of the row), in one transaction. Nothing else of the instance reaches the trail.

    An existing row needs ``before=audit_snapshot(instance)`` taken before it was changed.
    """
    auditable_fields(instance._meta.label)  # a model that declares none is refused before anything is written
    adding = instance._state.adding
    if not adding and before is None:
        raise TypeError(
            f"audited_save of an existing {instance._meta.label} needs before=audit_snapshot(instance), "
            "taken before the change."
        )
    changes = diff(None if adding else before, audit_snapshot(instance))
    if update_fields is not None:
        update_fields = list(update_fields)
        unsaved = sorted(set(changes) - set(update_fields))
        if unsaved:  # the event would record a change that the save leaves out
            raise ValueError(f"audited_save: {', '.join(unsaved)} changed but not in update_fields.")
    if update_fields is None:
        instance.full_clean()
    else:  # what is not written is not validated: no look-up of unchanged foreign keys and unique constraints
        saved = set(update_fields)
        instance.full_clean(
            exclude=[f.name for f in instance._meta.concrete_fields if f.name not in saved and f.attname not in saved]
        )
    if adding:
        instance.save(force_insert=force_insert)
    else:
        instance.save(update_fields=update_fields)
    changes.update(extra_changes or {})
    return audit_record(
        actor=actor,
        action=action,
        obj=instance,
        changes=changes,
        reason=reason,
        trial_ref=trial_ref,
        hospital_code=hospital_code,
    )


@transaction.atomic
def audited_delete(
    instance: models.Model,
    *,
    actor: Any,
    action: str,
    reason: str = "",
    trial_ref: str = "",
    hospital_code: str = "",
) -> AuditEvent:
    """Record the event, then delete: the event keeps the declared auditable fields as they were
    (``{field: [old, None]}``) and the object's key and description, in the delete's transaction."""
    if not reason.strip():
        raise ValidationError({"reason": "Give a reason for deleting this."})
    changes = {name: [value, None] for name, value in audit_snapshot(instance).items()}
    event = audit_record(
        actor=actor,
        action=action,
        obj=instance,
        changes=changes,
        reason=reason.strip(),
        trial_ref=trial_ref,
        hospital_code=hospital_code,
    )
    instance.delete()
    return event


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
    """Append one event to the chain. Call it inside the transaction of the change it records.

    Refuses an action that no app registered (vocabulary.py) and a ``changes`` key that names a secret.
    """
    require_action(action)
    if len(reason) > limits.AUDIT_REASON:  # the forms and serializers hold reasons to less; this catches any other
        raise ValidationError(
            {"reason": f"The reason has {len(reason):,} characters; at most {limits.AUDIT_REASON:,} are allowed."}
        )
    secret_keys = sorted(str(key) for key in (changes or {}) if is_secret_name(str(key)))
    if secret_keys:
        raise SecretInAuditPayload(
            f"Refused to record {', '.join(secret_keys)} in the audit trail of {action}: a secret never enters it "
            "(record only the model's declared auditable fields)."
        )
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)[:200]
    actor_obj = actor if getattr(actor, "is_authenticated", False) else None
    _lock_chain()
    head = AuditHead.objects.select_for_update().filter(pk=1).first()
    if head is None:  # a new trail (or one from before the head record): continue from its last event
        last = AuditEvent.objects.order_by("-seq").only("seq", "hash").first()
        head = AuditHead(pk=1, seq=last.seq if last else 0, hash=last.hash if last else GENESIS_HASH)
    event = AuditEvent(
        seq=head.seq + 1,
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
        payload_salt=secrets.token_hex(16),
        prev_hash=head.hash,
    )
    event.payload_digest = payload_digest(_payload_of(event), event.payload_salt)
    event.hash = event_hash(_fields_of(event), event.prev_hash, chain_key())
    event.save(force_insert=True)
    head.seq, head.hash = event.seq, event.hash
    head.save()
    return event


@transaction.atomic
def audit_redact(*, actor: Any, seq: int, reason: str) -> AuditEvent:
    """Replace event ``seq``'s payload (changes, reason, description) and its salt by a redaction marker.

    For a secret that reached the trail. The event's digest, hash and header stay, so the chain still verifies;
    the redaction is itself an ``audit_event.redact`` event naming the redacted one, its digest and the reason.
    Returns that event. Refused with a clear message for an unknown event, an event already redacted, or no reason.
    """
    if not reason.strip():
        raise ValidationError({"reason": "Give the reason for redacting an audit event."})
    _lock_chain()  # no other redaction or append between the check and the update
    target = AuditEvent.objects.filter(seq=seq).first()
    if target is None:
        raise ValidationError(f"There is no audit event #{seq}.")
    if target.is_redacted:
        raise ValidationError(f"Audit event #{seq} was already redacted by event #{target.redacted_by_seq}.")
    if target.action in UNREDACTABLE_ACTIONS:
        raise ValidationError(
            f"Audit event #{seq} is the trail's own record ({target.action}) and is never redacted: "
            "it holds no trial data, and redacting it would erase who redacted what and why."
        )
    redaction = audit_record(
        actor=actor,
        action=REDACT_ACTION,
        object_type=AuditEvent._meta.label_lower,
        object_id=str(target.seq),
        object_repr=f"audit event #{target.seq} ({target.action})",
        hospital_code=target.hospital_code,
        trial_ref=target.trial_ref,
        changes={"payload": [target.payload_digest, "redacted"]},
        reason=reason.strip(),
    )
    AuditEvent.objects.filter(pk=target.pk).update(
        changes=redaction_marker(redaction.seq),
        reason="",
        object_repr="",
        payload_salt="",
        redacted_by_seq=redaction.seq,
    )
    return redaction


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""
    head: tuple[int, str] | None = None  # (seq, hash) of the last event, to keep outside the database
    redacted: int = 0  # events whose payload a recorded redaction replaced


def _redaction_problem(event: AuditEvent) -> str:
    """Why a redacted event's marker is not one that :func:`audit_redact` writes ("" when it is)."""
    by = event.redacted_by_seq
    if by is None or by <= event.seq:
        return f"it names event #{by} as its redaction, which cannot be"
    if event.action in UNREDACTABLE_ACTIONS:
        return f"it is the trail's own record ({event.action}), which is never redacted"
    if event.changes != redaction_marker(by) or event.reason or event.object_repr or event.payload_salt:
        return "its payload is neither the original nor a redaction marker"
    return ""


def audit_verify(
    *,
    batch_size: int = 2000,
    expect_head: tuple[int, str] | None = None,
    anchor: Anchor | None = None,
    allow_empty: bool = False,
) -> ChainReport:
    """Recompute the whole chain. Reports the first event whose content, link or number is wrong.

    Each event's hash is an HMAC under the key kept outside the database, so an event rewritten and re-hashed
    without the key is caught. Each event's payload must match its digest, unless a later ``audit_event.redact``
    event names it and its payload is exactly the redaction marker pointing back there; any other edit of an
    event is reported. The head record (:class:`AuditHead`) must name the last event: deleting the last events
    leaves it pointing past them. ``expect_head`` (a head printed by an earlier run) and ``anchor`` (the newest
    signed anchor in object storage, :func:`audit_anchor_latest`) must still be in the chain unchanged, which
    catches someone who also rewrote the head record. An empty trail is refused unless ``allow_empty`` (a new
    installation that has recorded nothing yet).
    """
    key = chain_key()
    known: list[tuple[int, str, str]] = []  # (seq, hash, where it was recorded)
    if expect_head is not None:
        known.append((expect_head[0], expect_head[1], "recorded earlier"))
    if anchor is not None:
        known.append((anchor.seq, anchor.hash, f"anchored at {anchor.written_at}"))
    expected_seq = 1
    prev_hash = GENESIS_HASH
    checked = 0
    redacted = 0
    awaiting: dict[int, int] = {}  # seq of a redaction event -> seq of the event it must have redacted

    def bad(seq: int, problem: str) -> ChainReport:
        return ChainReport(False, checked, seq, problem)

    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=batch_size):
        if event.seq != expected_seq:
            return bad(
                event.seq,
                f"event #{event.seq} follows #{expected_seq - 1}: "
                f"event(s) #{expected_seq}..#{event.seq - 1} were deleted",
            )
        if event.prev_hash != prev_hash:
            return bad(event.seq, f"event #{event.seq} does not link to its predecessor")
        if not signatures_match(event_hash(_fields_of(event), event.prev_hash, key), event.hash):
            return bad(event.seq, f"event #{event.seq} was modified after it was written")
        if event.redacted_by_seq is not None:
            problem = _redaction_problem(event)
            if problem or event.redacted_by_seq in awaiting:
                return bad(
                    event.seq, f"event #{event.seq} was modified after it was written: {problem or 'redacted twice'}"
                )
            awaiting[event.redacted_by_seq] = event.seq
            redacted += 1
        # Re-read JSON through json_safe (in payload_digest) so the stored value is hashed as it was written.
        elif payload_digest(_payload_of(event), event.payload_salt) != event.payload_digest:
            return bad(
                event.seq,
                f"event #{event.seq} was modified after it was written: its payload does not match its digest "
                "and no recorded redaction replaced it",
            )
        if event.action == REDACT_ACTION:
            target = awaiting.pop(event.seq, None)
            if target is None or event.object_id != str(target):
                return bad(
                    event.seq,
                    f"event #{event.seq} records the redaction of event #{event.object_id}, which is not redacted",
                )
        elif event.seq in awaiting:
            target = awaiting[event.seq]
            return bad(target, f"event #{target} was modified after it was written: #{event.seq} is no redaction")
        for seq, hash_, where in known:
            if event.seq == seq and not signatures_match(event.hash, hash_):
                return bad(event.seq, f"event #{event.seq} is not the one {where}")
        prev_hash = event.hash
        expected_seq += 1
        checked += 1
    if awaiting:
        by, target = min(awaiting.items(), key=lambda item: item[1])
        return bad(target, f"event #{target} was modified after it was written: its redaction #{by} does not exist")
    for seq, _hash, where in sorted(known, reverse=True):
        if checked < seq:
            return bad(
                checked + 1,
                f"the trail ends at #{checked} but event #{seq} was {where}: "
                f"event(s) #{checked + 1}..#{seq} were deleted",
            )
    head = AuditHead.objects.filter(pk=1).first()
    if head is None and checked:
        return bad(checked, f"the trail's head record is missing (the trail ends at #{checked})")
    if head is not None and head.seq > checked:
        return bad(
            checked + 1,
            f"the trail ends at #{checked} but its head record names #{head.seq}: "
            f"event(s) #{checked + 1}..#{head.seq} were deleted",
        )
    if head is not None and (head.seq < checked or not signatures_match(head.hash, prev_hash)):
        return bad(checked, f"the trail's head record (#{head.seq}) does not match its last event #{checked}")
    if not checked and not allow_empty:
        return ChainReport(
            False,
            0,
            None,
            "the trail is empty: a Visus database records events from its first use, so an empty trail means "
            "it was emptied (or this is a new installation: verify it with --allow-empty)",
        )
    return ChainReport(True, checked, head=(checked, prev_hash) if checked else None, redacted=redacted)


@dataclass(frozen=True)
class Anchor:
    """A head (event number and hash) written outside the database, signed with the chain's key."""

    seq: int
    hash: str
    written_at: str
    name: str = ""


@dataclass(frozen=True)
class AnchorScan:
    latest: Anchor | None
    forged: list[str]  # files whose signature does not verify


def _anchor_storage() -> Storage:
    return storages["audit_anchors"]


def _anchor_path(name: str) -> str:
    return f"{ANCHOR_FOLDER}/{name}" if ANCHOR_FOLDER else name


def audit_anchor_latest(storage: Storage | None = None) -> AnchorScan:
    """The newest anchor whose signature verifies, and the names of any that do not (forged or foreign)."""
    storage = storage or _anchor_storage()
    key = chain_key()
    try:
        _dirs, files = storage.listdir(ANCHOR_FOLDER)
    except FileNotFoundError:
        return AnchorScan(None, [])
    latest: Anchor | None = None
    forged: list[str] = []
    for name in sorted(files):
        if not name.endswith(".json"):
            continue
        try:
            with storage.open(_anchor_path(name)) as handle:
                data = json.loads(handle.read())
            anchor = Anchor(int(data["seq"]), str(data["hash"]), str(data["written_at"]), name)
            signature = str(data["signature"])
        except (ValueError, KeyError, TypeError, OSError):
            forged.append(name)
            continue
        expected = anchor_signature(seq=anchor.seq, hash_=anchor.hash, written_at=anchor.written_at, key=key)
        if not signatures_match(expected, signature):
            forged.append(name)
        elif latest is None or anchor.seq >= latest.seq:
            latest = anchor
    return AnchorScan(latest, forged)


def audit_anchor(storage: Storage | None = None) -> Anchor:
    """Verify the trail (against the newest anchor), then write its head as a signed anchor to object storage
    and to the log. Run daily (Celery beat) and by ``verify_audit_trail --anchor``.

    Refuses (ValidationError) to anchor a trail that does not verify, an empty one, or when an anchor file is
    forged: an anchor must never bless a tampered trail.
    """
    storage = storage or _anchor_storage()
    scan = audit_anchor_latest(storage)
    if scan.forged:
        raise ValidationError(f"Not anchoring: anchor file(s) {', '.join(scan.forged)} fail their signature.")
    report = audit_verify(anchor=scan.latest)
    if not report.ok or report.head is None:
        raise ValidationError(f"Not anchoring: the audit trail does not verify ({report.problem}).")
    seq, hash_ = report.head
    written_at = timezone.now().astimezone(dt.UTC).isoformat()
    signature = anchor_signature(seq=seq, hash_=hash_, written_at=written_at, key=chain_key())
    name = f"{seq:012d}-{written_at.replace(':', '').replace('+0000', 'Z')}.json"
    body = {"seq": seq, "hash": hash_, "written_at": written_at, "signature": signature}
    saved = storage.save(_anchor_path(name), ContentFile(json.dumps(body, sort_keys=True).encode("ascii")))
    logger.info("Audit anchor: event #%s hash %s at %s signature %s (%s)", seq, hash_, written_at, signature, saved)
    return Anchor(seq, hash_, written_at, saved.rsplit("/", 1)[-1])


EXPORT_ACTION = "audit_trail.export"


@transaction.atomic
def audit_trail_export_record(*, actor: Any, filters: Mapping[str, str], count: int) -> AuditEvent:
    """Record that ``actor`` exported ``count`` events of the trail with ``filters``. The event is filed at the
    first of the actor's reviewing hospitals (by code), so that reviewers there see who exported what."""
    code = hospitals_for(actor, roles=AUDIT_ROLES).order_by("code").values_list("code", flat=True).first() or ""
    return audit_record(
        actor=actor,
        action=EXPORT_ACTION,
        object_type="audit.auditevent",
        object_repr=f"audit trail export ({count} events)",
        changes={"filters": [None, dict(filters)], "events": [None, count]},
        hospital_code=code,
    )
