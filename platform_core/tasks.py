"""The project's task decorator and the worker health-check task.

Every task is declared with :func:`project_task`, so that late acknowledgement, redelivery when a
worker dies, time limits and bounded retries cannot be forgotten.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from platform_core.celery import app


class TransientError(Exception):
    """An error worth retrying (storage or broker briefly unavailable). Others fail at once."""


def project_task(
    *,
    queue: str = "default",
    transient: tuple[type[BaseException], ...] = (TransientError,),
    max_retries: int = 3,
    soft_time_limit: int = 300,
    time_limit: int | None = None,
    **options: Any,
) -> Callable[[Callable[..., Any]], Any]:
    """Declare a Celery task with the project's reliability settings.

    Tasks must be idempotent: ``acks_late`` means a message is redelivered if the worker dies
    before finishing, so the same task can run twice.
    """
    if queue not in {"default", "gpu"}:
        raise ValueError(f"Unknown queue {queue!r}: use 'default' or 'gpu'")
    if max_retries < 0 or max_retries > 10:
        raise ValueError("max_retries must be between 0 and 10")

    def decorator(func: Callable[..., Any]) -> Any:
        return app.task(
            queue=queue,
            acks_late=True,
            reject_on_worker_lost=True,
            soft_time_limit=soft_time_limit,
            time_limit=time_limit or soft_time_limit + 60,
            autoretry_for=transient,
            max_retries=max_retries,
            retry_backoff=2,
            retry_backoff_max=300,
            retry_jitter=True,
            **options,
        )(func)

    return decorator


@project_task(soft_time_limit=10)
def worker_ping(nonce: str) -> dict[str, Any]:
    """Answer a health check: proves a live worker took the message and sent a result back."""
    return {"nonce": nonce, "hostname": socket.gethostname(), "pid": os.getpid()}
