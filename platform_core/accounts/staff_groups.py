"""Staff permission groups are production policy, declared in code by each app and created on every migrate.

An app declares what each staff group may do with its models in a ``staff_permissions`` module::

    STAFF_PERMISSIONS = {TRIAL_MANAGERS: {"trial": ("add", "change", "view"), "subject": ("view",)}}

After each app's migrations Django sends ``post_migrate``; :func:`staff_groups_on_migrate` then sets each
declared group's permissions on that app's models to exactly what the app declares (adding what is missing,
removing what is no longer declared, leaving other apps' permissions alone). Running it again changes nothing.
The admin shows declared groups read-only (the services refuse to change them); the user admin assigns them.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from typing import Any

from django.apps import AppConfig, apps

logger = logging.getLogger(__name__)

# The Django admin for trial managers: set up their trials and sites, register models, read what their
# hospitals and trials hold (every row scoped to them, every change through an audited service).
TRIAL_MANAGERS = "Trial managers (admin)"

MODULE = "staff_permissions"
ACTIONS = ("add", "change", "delete", "view")


def declared_permissions(app_config: AppConfig) -> dict[str, dict[str, tuple[str, ...]]]:
    """``{group: {model: actions}}`` declared by one app (empty when it declares none)."""
    try:
        module = importlib.import_module(f"{app_config.name}.{MODULE}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{app_config.name}.{MODULE}":
            raise
        return {}
    declared: Mapping[str, Mapping[str, Any]] = module.STAFF_PERMISSIONS
    result: dict[str, dict[str, tuple[str, ...]]] = {}
    for group, models in declared.items():
        for model, actions in models.items():
            app_config.get_model(model)  # a typo fails at migrate, not silently
            bad = set(actions) - set(ACTIONS)
            if bad:
                raise ValueError(f"{app_config.label}.{MODULE}: unknown actions {sorted(bad)} for {model}")
            result.setdefault(group, {})[model] = tuple(actions)
    return result


def declared_staff_groups() -> dict[str, dict[str, dict[str, tuple[str, ...]]]]:
    """``{group: {app_label: {model: actions}}}`` across every installed app."""
    groups: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {}
    for app_config in apps.get_app_configs():
        for group, models in declared_permissions(app_config).items():
            groups.setdefault(group, {})[app_config.label] = models
    return groups


def staff_groups_sync(app_config: AppConfig, *, using: str = "default") -> list[str]:
    """Give each group that ``app_config`` declares exactly its declared permissions on that app's models.

    Idempotent. Returns the names of the groups that changed (logged, not audited: the policy is code, and its
    history is the repository's).
    """
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    declared = declared_permissions(app_config)
    if not declared:
        return []
    create_permissions(app_config, verbosity=0, using=using)  # idempotent; the app's rows must exist first
    changed = []
    for name, models in declared.items():
        group, created = Group.objects.using(using).get_or_create(name=name)
        wanted = set()
        for model, actions in models.items():
            for action in actions:
                wanted.add(
                    Permission.objects.using(using).get(
                        content_type__app_label=app_config.label, codename=f"{action}_{model}"
                    )
                )
        current = set(group.permissions.filter(content_type__app_label=app_config.label))
        if created or wanted != current:
            group.permissions.remove(*(current - wanted))
            group.permissions.add(*(wanted - current))
            changed.append(name)
            # A first installation (or a flushed test database) is news to nobody; a changed policy is.
            logger.log(
                logging.INFO if current else logging.DEBUG,
                "Staff group %r: permissions on %s set as declared",
                name,
                app_config.label,
            )
    return changed


def staff_groups_on_migrate(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    staff_groups_sync(sender, using=using)
