"""Hashing of audit events. Pure: no Django imports.

Each event's hash is an HMAC-SHA256, under a key kept outside the database (``VISUS_AUDIT_KEY``), of its
header (number, time, actor, action, object, scope), the digest of its payload and the previous event's hash:
someone who can write to the database but does not hold the key cannot rewrite an event and re-hash the chain.
The payload itself (what changed, the reason, the object's description) is
outside the hash, behind its salted digest, so that an operator can redact a secret that landed there.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from typing import Any

GENESIS_HASH = "0" * 64


def json_safe(value: Any) -> Any:
    """Turn a field value into something JSON keeps exactly (dates as ISO text, UUIDs as text)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
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


def _canonical(data: Any) -> bytes:
    return json.dumps(json_safe(data), sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def event_hash(fields: Mapping[str, Any], prev_hash: str, key: bytes) -> str:
    """HMAC-SHA256 under ``key`` of the canonical JSON of an event's fields and the previous event's hash."""
    if not key:
        raise ValueError("The audit chain needs a key (VISUS_AUDIT_KEY).")
    return hmac.new(key, _canonical({"fields": fields, "prev": prev_hash}), hashlib.sha256).hexdigest()


def anchor_signature(*, seq: int, hash_: str, written_at: str, key: bytes) -> str:
    """HMAC-SHA256 under ``key`` of an anchor (a head written outside the database: to the log and object storage).

    Domain-separated from event hashes, so that an anchor's signature can never pass for an event's hash.
    """
    if not key:
        raise ValueError("The audit chain needs a key (VISUS_AUDIT_KEY).")
    return hmac.new(
        key, _canonical({"anchor": {"seq": seq, "hash": hash_, "written_at": written_at}}), hashlib.sha256
    ).hexdigest()


def signatures_match(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("ascii", "replace"), b.encode("ascii", "replace"))


def payload_digest(payload: Mapping[str, Any], salt: str) -> str:
    """SHA-256 of an event's payload (its free text: changes, reason, object_repr) and a random salt.

    The chain covers this digest, not the payload, so the payload can be redacted without breaking the chain.
    The salt is erased with the payload: a redacted low-entropy secret cannot be confirmed by guessing.
    """
    text = json.dumps(
        {"payload": json_safe(payload), "salt": salt}, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return hashlib.sha256(text.encode("ascii")).hexdigest()
