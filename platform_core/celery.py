"""The Celery app: queues ``default`` and ``gpu``; tasks are declared with ``project_task``."""

import os

from celery import Celery
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
app.autodiscover_tasks(["platform_core", "trials", "diagnosis"])
