"""Reads of models, jobs and predictions, scoped like cases."""

from __future__ import annotations

from typing import Any

from platform_core.accounts.models import User
from trials.models import Case


def case_inference_context(*, user: User, case: Case) -> dict[str, Any]:
    """Inference jobs and predictions of a case for its page (filled in by the inference feature)."""
    return {"inference_jobs": []}
