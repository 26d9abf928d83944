"""Labels, not keys, on the reading pages: reader groups, phases and answers as people read them."""

from __future__ import annotations

from typing import Any

from django import template

from reading.selectors import labelled_answers

register = template.Library()


@register.filter
def key_label(value: Any) -> str:
    """``general_physician`` -> "General physician" (a trial's own groups are already words)."""
    text = str(value or "").replace("_", " ").strip()
    return text[:1].upper() + text[1:]


@register.filter
def answers_label(answers: dict[str, Any]) -> str:
    """Known answers as "ICDR diabetic retinopathy grade: 0 No apparent retinopathy; ..."."""
    return "; ".join(f"{row['question']}: {row['answer']}" for row in labelled_answers(answers or {}, {}))
