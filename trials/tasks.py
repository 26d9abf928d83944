"""Celery tasks of the trials app (Celery beat: ``CELERY_BEAT_SCHEDULE`` in settings)."""

from __future__ import annotations

from platform_core.tasks import project_task


@project_task(soft_time_limit=1800, max_retries=0)
def orphan_objects_sweep_task() -> dict[str, int]:
    """Delete stored case objects that no row refers to (uploads whose transaction never committed)."""
    from trials.file_services import orphan_objects_sweep

    return {"deleted": len(orphan_objects_sweep())}
