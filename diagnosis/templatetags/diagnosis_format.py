"""Numbers of the diagnosis pages as clinicians read them: probabilities in whole percent (as the case page shows
them, ``diagnosis.results.percent``), fusion weights with two decimals."""

from __future__ import annotations

from typing import Any

from django import template

from diagnosis.results import percent

register = template.Library()


@register.filter(name="percent")
def percent_filter(value: Any) -> str:
    """A probability (0-1) as ``38%`` (``<1%`` and ``>99%`` near the ends); empty for none."""
    if value is None or value == "":
        return ""
    return percent(float(value))
