"""Celery tasks of the evaluation app: thin wrappers over services (idempotent, acks late)."""

from __future__ import annotations

from platform_core.tasks import project_task


@project_task(soft_time_limit=600, max_retries=0)
def refresh_analysis_task(trial_pk: str) -> dict:
    """Compute and store a trial's dashboard analyses unless the stored ones are current. Safe to deliver twice."""
    from evaluation.snapshots import refresh

    return refresh(trial_pk)
