"""One vocabulary of audit actions, and per audited model the fields an audit event may record.

Each app declares its own in an ``auditing`` module (``trials/auditing.py``...), which the audit app imports
from ``AppConfig.ready()``; adding an action is one line there. :func:`platform_core.audit.services.audit_record`
refuses an action nobody registered, and no field whose name says it holds a secret (a password, token, key,
digest, salt...) can be declared auditable or appear in an event's ``changes``.

No Django models here: the registry is plain data, filled at start-up and read while recording.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured

# entity.verb, both in snake case: "trial_site.update", "inference_job.queue".
ACTION_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")

# A name that contains one of these words (split on anything that is not a letter, so "password1",
# "key_digest" and "api-key" all match) names a secret and is never recorded.
SECRET_WORDS = frozenset(
    {"password", "passwd", "passphrase", "secret", "token", "key", "digest", "salt", "hash", "otp", "credential"}
)


def is_secret_name(name: str) -> bool:
    """True when a field or payload key's name says it may hold a secret."""
    return any(part in SECRET_WORDS for part in re.split(r"[^a-z]+", name.lower()))


class UnknownAuditAction(ImproperlyConfigured):
    """An action that no app registered in its ``auditing`` module."""


@dataclass(frozen=True)
class AuditAction:
    name: str
    description: str
    owner: str  # the app (or module) that registered it


@dataclass(frozen=True)
class AuditableField:
    """``name`` is the key in an event's changes; ``path`` the attribute path read from the instance
    (``hospital.code`` records a site's hospital by its code, not its primary key)."""

    name: str
    path: tuple[str, ...]


_actions: dict[str, AuditAction] = {}
_auditable: dict[str, tuple[AuditableField, ...]] = {}


def register_actions(owner: str, actions: Mapping[str, str]) -> None:
    """Register ``{action: description}`` for ``owner`` (an app label). Registering the same name again for the
    same owner is harmless; another owner taking a name is a configuration error."""
    for name, description in actions.items():
        if not ACTION_NAME.match(name):
            raise ImproperlyConfigured(f"Audit action {name!r} is not of the form entity.verb (snake case).")
        if not description.strip():
            raise ImproperlyConfigured(f"Audit action {name!r} needs a description.")
        existing = _actions.get(name)
        if existing is not None and existing.owner != owner:
            raise ImproperlyConfigured(f"Audit action {name!r} is registered by both {existing.owner} and {owner}.")
        _actions[name] = AuditAction(name=name, description=description.strip(), owner=owner)


def require_action(name: str) -> AuditAction:
    try:
        return _actions[name]
    except KeyError:
        raise UnknownAuditAction(
            f"Unknown audit action {name!r}: register it (entity.verb with a description) in its app's auditing.py "
            "with platform_core.audit.vocabulary.register_actions."
        ) from None


def registered_actions() -> dict[str, AuditAction]:
    return dict(_actions)


def register_auditable_fields(model_label: str, fields: Iterable[str]) -> None:
    """Declare the fields of ``app_label.ModelName`` that audit events record. ``"relation.attr"`` records a
    related object by one of its attributes under the key ``relation``. Secret-looking names are refused."""
    label = model_label.lower()
    declared: list[AuditableField] = []
    for spec in fields:
        path = tuple(spec.split("."))
        if not all(path):
            raise ImproperlyConfigured(f"Auditable field {spec!r} of {model_label} is not a name or dotted path.")
        if any(is_secret_name(part) for part in path):
            raise ImproperlyConfigured(
                f"{model_label}.{spec} names a secret (password, token, key...); it can never be auditable."
            )
        declared.append(AuditableField(name=path[0], path=path))
    names = [f.name for f in declared]
    if len(set(names)) != len(names):
        raise ImproperlyConfigured(f"Auditable fields of {model_label} repeat a name: {names}.")
    existing = _auditable.get(label)
    if existing is not None and existing != tuple(declared):
        raise ImproperlyConfigured(f"Auditable fields of {model_label} are declared twice, differently.")
    _auditable[label] = tuple(declared)


def auditable_fields(model_label: str) -> tuple[AuditableField, ...]:
    try:
        return _auditable[model_label.lower()]
    except KeyError:
        raise ImproperlyConfigured(
            f"{model_label} declares no auditable fields: list them in its app's auditing.py with "
            "register_auditable_fields before saving it through audited_save."
        ) from None


def registered_auditable_fields() -> dict[str, tuple[AuditableField, ...]]:
    return dict(_auditable)


def _attname(instance: Any, name: str) -> str:
    try:
        return instance._meta.get_field(name).attname
    except (AttributeError, FieldDoesNotExist):  # not a model field (a property, say): read it as it is
        return name


def read_path(instance: Any, path: tuple[str, ...]) -> Any:
    """Follow ``path`` from ``instance``; a missing relation along the way reads as None. A plain foreign key
    (one element) reads its key column, so no query is made for it."""
    if len(path) == 1:
        return getattr(instance, _attname(instance, path[0]))
    value = instance
    for part in path:
        if value is None:
            return None
        value = getattr(value, part)
    return value
