"""Celery tasks of the diagnosis app: thin wrappers over services (idempotent, acks late)."""

from __future__ import annotations

from platform_core.tasks import TransientError, project_task


@project_task(queue="gpu", soft_time_limit=600, max_retries=3, transient=(TransientError, ConnectionError))
def infer_case_task(job_pk: str) -> dict[str, int]:
    """Run an inference job (batched with other queued jobs of its model). Safe to deliver twice."""
    import os

    from diagnosis.networks.inference import configure_threads
    from diagnosis.services import inference_run
    from platform_core.celery import CONCURRENCY_ENV

    configure_threads(concurrency=int(os.environ.get(CONCURRENCY_ENV) or 1))
    return inference_run(job_pk=job_pk, task_id=infer_case_task.request.id or f"local-{job_pk}")
