"""Faults with the real services (issue 13): the Celery broker down as a case is completed, a database error after
an upload's objects were stored, and PostgreSQL restarted under load. Each service that is stopped is a private
instance of the test's own (tests/support/faults.py); the shared ones keep running."""

from __future__ import annotations

import time
from datetime import timedelta
from unittest import mock

from django.test import TestCase, TransactionTestCase, override_settings, tag
from django.urls import reverse
from rest_framework.test import APIClient

from diagnosis.models import InferenceJob, Prediction
from diagnosis.services import inference_redispatch
from tests.support import LiveWorker, require_redis_broker
from tests.support.faults import PrivateRedis, celery_broker
from tests.support.inference import InferenceFixture
from trials.models import CaseStatus


@tag("redis", "worker")
class BrokerDownAsACaseIsCompletedTests(InferenceFixture, TransactionTestCase):
    """The broker (a private Redis) is down when a coordinator completes a case: the case is complete, its jobs are
    written and stay queued with no message (one error line says so). With the broker back, the re-dispatch sends
    them and a real worker runs each exactly once, however many messages it got."""

    def setUp(self):
        require_redis_broker()  # results travel through the shared Redis
        self.build()
        self.addCleanup(self.cleanup)
        self.broker = PrivateRedis()
        self.addCleanup(self.broker.stop)
        self.broker.start()
        switch = celery_broker(self.broker.url)
        switch.__enter__()
        self.addCleanup(switch.__exit__, None, None, None)

    def test_jobs_wait_for_the_broker_and_run_once_when_it_is_back(self):
        self.broker.stop()
        client = APIClient()
        client.force_authenticate(self.w.coord1)
        started = time.monotonic()
        with self.assertLogs("diagnosis.services", "ERROR") as logged:
            response = client.post(
                reverse("api:trials:case-status", args=[self.case.pk]), {"status": "complete"}, format="json"
            )
        self.assertEqual(response.status_code, 200, response.content)
        self.assertLess(time.monotonic() - started, 15)
        self.case.refresh_from_db()
        self.assertEqual(self.case.status, CaseStatus.COMPLETE)
        jobs = list(InferenceJob.objects.filter(case=self.case))
        self.assertEqual(len(jobs), 2)
        self.assertEqual({(j.status, j.dispatched_at) for j in jobs}, {("queued", None)})
        self.assertEqual(len(logged.output), 1, logged.output)
        self.assertIn("Broker unreachable", logged.output[0])
        self.assertIn("2 inference job(s) stay queued, not dispatched", logged.output[0])

        # Beat's sweep while the broker is still down sends nothing and keeps the jobs.
        with self.assertLogs("diagnosis.services", "ERROR"):
            self.assertEqual(inference_redispatch(unsent_for=timedelta(0)), 0)
        self.assertEqual(InferenceJob.objects.filter(case=self.case, dispatched_at__isnull=True).count(), 2)

        self.broker.start()  # empty: the messages were never sent
        # A job that waited less than the threshold is left to the request that queued it.
        self.assertEqual(inference_redispatch(unsent_for=timedelta(hours=1)), 0)
        # The sweep twice over (beat firing again before a worker took them): two messages per job.
        self.assertEqual(inference_redispatch(unsent_for=timedelta(0)), 2)
        self.assertEqual(InferenceJob.objects.filter(case=self.case, dispatched_at__isnull=True).count(), 0)
        self.assertEqual(inference_redispatch(unsent_for=timedelta(0), sent_for=timedelta(0)), 2)

        worker = LiveWorker(broker_url=self.broker.url, queues="gpu").start()
        self.addCleanup(worker.stop)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if not InferenceJob.objects.filter(case=self.case, status__in=["queued", "running"]).exists():
                break
            time.sleep(0.3)
        jobs = {j.model_version.name: j for j in InferenceJob.objects.filter(case=self.case)}
        self.assertEqual({n: j.status for n, j in jobs.items()}, {"dr-test": "succeeded", "vf-test": "succeeded"})
        self.assertEqual({n: j.attempts for n, j in jobs.items()}, {"dr-test": 1, "vf-test": 1}, worker.log_tail())
        import redis

        queue = redis.Redis.from_url(self.broker.url)
        deadline = time.monotonic() + 30  # the duplicate messages are taken (and do nothing)
        while time.monotonic() < deadline and queue.llen("gpu"):
            time.sleep(0.3)
        time.sleep(1)
        self.assertEqual(queue.llen("gpu"), 0, worker.log_tail())
        self.assertEqual(Prediction.objects.filter(case=self.case).count(), 2)
        self.assertEqual(
            {j.attempts for j in InferenceJob.objects.filter(case=self.case)}, {1}, "a duplicate message ran a job"
        )


class RedispatchTaskTests(InferenceFixture, TestCase):
    """Beat's task sends only queued jobs that lack a message: never dispatched past the threshold, or dispatched
    long ago and still queued; running and finished jobs, and fresh ones, are left alone."""

    def setUp(self):
        self.build()
        self.addCleanup(self.cleanup)

    @override_settings(VISUS_INFERENCE_REDISPATCH_UNSENT_SECONDS=60, VISUS_INFERENCE_RESEND_SECONDS=3600)
    def test_which_jobs_the_sweep_sends(self):
        from django.utils import timezone

        from diagnosis.tasks import inference_redispatch_task

        now = timezone.now()
        fresh = InferenceJob.objects.create(case=self.case, model_version=self.dr)
        old_unsent = InferenceJob.objects.create(case=self.w.case2, model_version=self.dr)
        InferenceJob.objects.filter(pk=old_unsent.pk).update(updated_at=now - timedelta(minutes=5))
        sent_long_ago = InferenceJob.objects.create(case=self.case, model_version=self.vf, dispatched_at=now)
        InferenceJob.objects.filter(pk=sent_long_ago.pk).update(dispatched_at=now - timedelta(hours=2))
        running = InferenceJob.objects.create(case=self.w.case2, model_version=self.vf, status="running")
        InferenceJob.objects.filter(pk=running.pk).update(updated_at=now - timedelta(hours=2))
        with mock.patch("diagnosis.tasks.infer_case_task.apply_async") as send:
            self.assertEqual(inference_redispatch_task.apply().get(), {"sent": 2})
        self.assertEqual(
            sorted(c.kwargs["args"][0] for c in send.call_args_list),
            sorted([str(old_unsent.pk), str(sent_long_ago.pk)]),
        )
        self.assertEqual({c.kwargs["queue"] for c in send.call_args_list}, {"gpu"})
        fresh.refresh_from_db()
        old_unsent.refresh_from_db()
        self.assertIsNone(fresh.dispatched_at)
        self.assertIsNotNone(old_unsent.dispatched_at)
