"""Number formatting of the analysis dashboard: estimates with their 95% intervals, proportions with counts."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


def _fixed(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


@register.filter
def estimate_ci(value: Any) -> str:
    """``{"auc" or "estimate": x, "ci95": [lo, hi]}`` as ``0.812 (0.701 to 0.923)``; n/a when absent."""
    if not value:
        return "n/a"
    estimate = value.get("auc", value.get("estimate"))
    lower, upper = value.get("ci95") or (None, None)
    if estimate is None:
        return "n/a"
    return f"{_fixed(estimate)} ({_fixed(lower)} to {_fixed(upper)})"


@register.filter
def proportion_ci(value: Any) -> str:
    """A proportion as ``0.812 (0.701 to 0.923), 13/16``."""
    if not value or not value.get("total"):
        return "n/a"
    return f"{estimate_ci(value)}, {value['successes']}/{value['total']}"


@register.filter
def fixed(value: Any, digits: int = 3) -> str:
    return _fixed(value, int(digits))
