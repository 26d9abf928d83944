"""The Celery app: queues ``default`` and ``gpu``; tasks are declared with ``project_task``."""

import os

from celery import Celery
from celery.signals import worker_init
from kombu import Queue

from platform_core.broker import register as register_embedded_broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_core.settings")
register_embedded_broker()

app = Celery("visus")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_queues=(Queue("default"), Queue("gpu")),
    task_default_queue="default",
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # One message at a time per worker process: a long GPU job never hoards queued work.
    worker_prefetch_multiplier=1,
    task_track_started=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
app.autodiscover_tasks(["platform_core"])  # the kernel's own tasks (worker_ping)
# Every installed app's ``tasks`` module, found through INSTALLED_APPS: the kernel names no app above it.
app.autodiscover_tasks()


CONCURRENCY_ENV = "VISUS_WORKER_CONCURRENCY"


@worker_init.connect
def remember_concurrency(sender=None, **kwargs) -> None:  # Celery's signal signature
    """Tell the worker's processes how many of them share the machine (they inherit the environment), so
    each sets torch's threads to its share of the cores instead of all of them."""
    os.environ[CONCURRENCY_ENV] = str(max(int(getattr(sender, "concurrency", 1) or 1), 1))
