"""Reading settings from the environment.

Pure helpers (no Django imports) so that they can be unit-tested with any mapping.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


class MissingSetting(Exception):
    """A setting that production needs was not given."""


class Env:
    """Typed access to environment variables with embedded defaults.

    ``required`` values have no default in production: they are collected and reported together,
    so that an operator sees every missing secret in one message.
    """

    def __init__(self, environ: Mapping[str, str], *, production: bool) -> None:
        self.environ = environ
        self.production = production
        self.missing: list[str] = []

    def str(self, name: str, default: str = "", *, required: bool = False) -> str:
        value = self.environ.get(name)
        if value is None or value == "":
            if required and self.production:
                self.missing.append(name)
            return default
        return value

    def bool(self, name: builtins.str, default: builtins.bool = False) -> builtins.bool:
        value = self.environ.get(name)
        if value is None:
            return default
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError(f"{name} must be true or false, not {value!r}")

    def int(self, name: builtins.str, default: builtins.int) -> builtins.int:
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{name} must be a whole number, not {value!r}") from None

    def list(
        self, name: builtins.str, default: list[builtins.str] | None = None, *, required: builtins.bool = False
    ) -> list[builtins.str]:
        raw = self.str(name, "", required=required)
        if not raw:
            return list(default or [])
        return [part.strip() for part in raw.split(",") if part.strip()]

    def check(self) -> None:
        if self.missing:
            names = ", ".join(self.missing)
            raise MissingSetting(
                f"Visus cannot start in production: missing required setting(s) {names}. "
                "Set them in the environment (see deploy/README.md)."
            )


def sqlite_options() -> dict[str, object]:
    """SQLite settings that let a Celery worker write while the web server does (measured: 0 locks)."""
    return {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }


# Values seen in tutorials, templates and .env examples: a key anyone can look up is no key.
_KNOWN_WEAK = {"changeme", "change-me", "secret", "password", "django-insecure", "insecure", "visus", "example"}


def weak_secret(value: str, *, minimum: int) -> str:
    """Why ``value`` is too weak to be a production key ("" when it is acceptable)."""
    lowered = value.lower()
    if len(value) < minimum:
        return f"it is {len(value)} characters long (at least {minimum} needed)"
    if any(lowered.startswith(word) for word in _KNOWN_WEAK) or lowered.startswith("django-insecure"):
        return "it is a well-known placeholder"
    if len(set(value)) < 10:
        return "it repeats too few distinct characters"
    return ""


def production_refusals(*, secret_key: str, audit_key: str, allowed_hosts: list[str]) -> list[str]:
    """What makes a production configuration unsafe to start; each item a sentence saying what to do."""
    refusals = []
    why = weak_secret(secret_key, minimum=50)
    if why:
        refusals.append(
            f"DJANGO_SECRET_KEY is weak: {why}. Generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
        )
    why = weak_secret(audit_key, minimum=32)
    if why:
        refusals.append(f"VISUS_AUDIT_KEY is weak: {why}. Generate it like DJANGO_SECRET_KEY and keep a copy safe.")
    elif audit_key == secret_key:
        refusals.append("VISUS_AUDIT_KEY must differ from DJANGO_SECRET_KEY (rotating one must not break the other).")
    wildcards = [host for host in allowed_hosts if host == "*" or host.startswith("*") or host == "."]
    if wildcards:
        refusals.append(
            f"DJANGO_ALLOWED_HOSTS contains the wildcard {', '.join(wildcards)!s}: name the hosts Visus serves."
        )
    return refusals
