import os
import subprocess
import sys
import tempfile
import uuid

from celery.exceptions import Retry
from django.test import SimpleTestCase, tag

from platform_core.celery import app
from platform_core.tasks import TransientError, project_task, worker_ping
from tests.support import ROOT, LiveWorker, require_redis_broker


class ProjectTaskDecoratorTests(SimpleTestCase):
    def test_tasks_are_acked_late_redelivered_time_limited_and_retried_boundedly(self):
        self.assertTrue(worker_ping.acks_late)
        self.assertTrue(worker_ping.reject_on_worker_lost)
        self.assertEqual(worker_ping.soft_time_limit, 10)
        self.assertEqual(worker_ping.time_limit, 70)
        self.assertEqual(worker_ping.max_retries, 3)
        self.assertEqual(worker_ping.autoretry_for, (TransientError,))
        self.assertTrue(worker_ping.retry_jitter)

    def test_gpu_queue_is_declared_and_unknown_queues_are_refused(self):
        self.assertEqual({q.name for q in app.conf.task_queues}, {"default", "gpu"})
        with self.assertRaisesMessage(ValueError, "Unknown queue 'fast'"):
            project_task(queue="fast")
        with self.assertRaisesMessage(ValueError, "max_retries"):
            project_task(max_retries=100)

    def test_transient_errors_retry_and_others_fail_at_once(self):
        calls = {"n": 0}

        @project_task(name=f"tests.flaky_{uuid.uuid4().hex}", max_retries=2)
        def flaky() -> str:
            calls["n"] += 1
            raise TransientError("storage briefly away")

        @project_task(name=f"tests.broken_{uuid.uuid4().hex}")
        def broken() -> str:
            calls["n"] += 100
            raise KeyError("bug")

        with self.assertRaises(Retry):
            flaky.apply(throw=True)
        self.assertEqual(calls["n"], 1)
        with self.assertRaises(KeyError):
            broken.apply(throw=True)

    def test_worker_prefetches_one_message(self):
        self.assertEqual(app.conf.worker_prefetch_multiplier, 1)

    def test_inference_threads_are_the_cores_shared_by_the_worker_processes(self):
        from types import SimpleNamespace
        from unittest import mock

        from diagnosis.tasks import infer_case_task
        from platform_core.celery import CONCURRENCY_ENV, remember_concurrency

        with mock.patch.dict(os.environ, {}, clear=False):
            remember_concurrency(sender=SimpleNamespace(concurrency=4))
            self.assertEqual(os.environ[CONCURRENCY_ENV], "4")
            with (
                mock.patch("diagnosis.networks.inference.configure_threads") as configure,
                mock.patch("diagnosis.services.inference_run", return_value={"ran": 0}),
            ):
                infer_case_task.apply(args=["00000000-0000-0000-0000-000000000000"], throw=True)
            configure.assert_called_once_with(concurrency=4)


@tag("redis", "worker")
class LiveWorkerOnRedisTests(SimpleTestCase):
    """A task goes through Redis to a real worker process and its result comes back."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        broker = require_redis_broker()
        cls.worker = LiveWorker(broker_url=broker).start()
        cls.addClassCleanup(cls.worker.stop)
        cls.worker.wait_ready(app)

    def test_task_round_trip_through_a_live_worker(self):
        nonce = uuid.uuid4().hex
        result = worker_ping.delay(nonce).get(timeout=30)
        self.assertEqual(result["nonce"], nonce)
        self.assertNotEqual(result["pid"], os.getpid())
        self.assertEqual(result["pid"], self.worker.process.pid)

    def test_many_tasks_all_come_back(self):
        nonces = [uuid.uuid4().hex for _ in range(50)]
        results = [worker_ping.delay(n) for n in nonces]
        self.assertEqual([r.get(timeout=60)["nonce"] for r in results], nonces)


@tag("worker")
class EmbeddedBrokerTests(SimpleTestCase):
    """The laptop default: a real worker on the filesystem broker, under a burst (DESIGN's pitfall)."""

    def test_burst_of_tasks_through_the_embedded_broker(self):
        data_dir = tempfile.mkdtemp(prefix="visus-embedded-")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "DATABASE_URL", "AWS_"))}
        env["VISUS_DATA_DIR"] = data_dir
        script = (
            "import django, uuid; django.setup()\n"
            "from platform_core.celery import app\n"
            "from platform_core.tasks import worker_ping\n"
            "from tests.support import LiveWorker\n"
            "assert app.conf.broker_url == 'visusfs://', app.conf.broker_url\n"
            "worker = LiveWorker(broker_url='visusfs://').start()\n"
            "try:\n"
            "    worker.wait_ready(app)\n"
            "    nonces = [uuid.uuid4().hex for _ in range(300)]\n"
            "    results = [worker_ping.delay(n) for n in nonces]\n"
            "    got = [r.get(timeout=120)['nonce'] for r in results]\n"
            "    assert got == nonces, 'results differ'\n"
            "    assert worker.process.poll() is None, 'worker died:' + worker.log_tail()\n"
            "    print('EMBEDDED-OK', len(got))\n"
            "finally:\n"
            "    worker.stop()\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        self.assertIn("EMBEDDED-OK 300", result.stdout, result.stdout[-3000:] + result.stderr[-3000:])
