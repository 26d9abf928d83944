"""Celery tasks of the diagnosis app: thin wrappers over services (idempotent, acks late)."""

from __future__ import annotations

from diagnosis.models import INFERENCE_MAX_ATTEMPTS
from platform_core.tasks import TransientError, project_task

TRANSIENT = (TransientError, ConnectionError)


# Celery counts the retries of one message; the job counts every attempt (InferenceJob.attempts), so a message the
# re-dispatch sends again does not start the job's count over (inference_run fails it at the bound, no retry).
@project_task(queue="gpu", soft_time_limit=600, max_retries=INFERENCE_MAX_ATTEMPTS - 1, transient=TRANSIENT)
def infer_case_task(job_pk: str) -> dict[str, int]:
    """Run an inference job (a first try is batched with other untried queued jobs of its model). Safe to deliver
    twice."""
    import os

    from diagnosis.networks.inference import configure_threads
    from diagnosis.services import inference_run
    from platform_core.celery import CONCURRENCY_ENV

    configure_threads(concurrency=int(os.environ.get(CONCURRENCY_ENV) or 1))
    request = infer_case_task.request
    return inference_run(
        job_pk=job_pk,
        task_id=request.id or f"local-{job_pk}",
        retryable=TRANSIENT,  # Celery runs the task again: its jobs go back to the queue for it
        final_attempt=(request.retries or 0) >= infer_case_task.max_retries,
    )


@project_task(soft_time_limit=120, max_retries=0)
def inference_redispatch_task() -> dict[str, int]:
    """Celery beat: send the queued inference jobs whose message the broker never took (the outbox's sweep)."""
    from diagnosis.services import inference_redispatch

    return {"sent": inference_redispatch()}
