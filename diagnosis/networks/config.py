"""JSON round trip for the networks' frozen config dataclasses (stored in checkpoints and the registry)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any, Self


class JsonConfig:
    """Mixin for frozen dataclasses: tuples become lists in JSON and back; unknown keys are refused.

    Network configs also name their presets: ``small()`` for CPUs (tests, demos) and ``full()`` for GPUs.
    """

    PRESETS = ("small", "full")

    @classmethod
    def preset(cls, name: str) -> Self:
        if name not in cls.PRESETS:
            raise ValueError(f"unknown preset {name!r}; known: {', '.join(cls.PRESETS)}")
        factory: Callable[[], Self] = getattr(cls, name)
        return factory()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)  # type: ignore[call-overload]
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        known = {field.name for field in fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items()})
