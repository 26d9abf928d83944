"""Celery tasks of the demo app: the demo networks' cross-validation, one fold per task (demo.cross_validation)."""

from __future__ import annotations

from typing import Any

from platform_core.tasks import project_task


# A fold of the DR grader trains for one to three minutes on a shared 2-core CPU; the limit leaves room for a
# slower laptop. Not retried: a failure is written on the card, and the next seed_demo sends it again. A worker
# that dies during a fold gets the message again (acks_late), which max_retries does not count: the card counts
# each fold's starts and fails a fold started more than MAX_FOLD_ATTEMPTS times (demo.cross_validation).
@project_task(queue="gpu", soft_time_limit=1800, max_retries=0)
def demo_cross_validation_fold_task(
    model_pk: str, fold: int, scores: list[float | None] | None, seconds: float = 0.0
) -> dict[str, Any]:
    """Train and score one fold, then send the next fold (behind whatever was queued meanwhile)."""
    import os

    from demo.cross_validation import cross_validation_fold_run
    from diagnosis.networks.inference import configure_threads
    from platform_core.celery import CONCURRENCY_ENV

    configure_threads(concurrency=int(os.environ.get(CONCURRENCY_ENV) or 1))
    outcome = cross_validation_fold_run(model_pk, fold, scores, seconds)
    if "next" in outcome:
        demo_cross_validation_fold_task.apply_async(args=[model_pk, *outcome["next"]], queue="gpu")
        return {"fold": fold, "next": outcome["next"][0]}
    return {"fold": fold, **{k: v for k, v in outcome.items() if k != "next"}}
