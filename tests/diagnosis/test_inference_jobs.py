"""Inference jobs: queued on completion, batched, idempotent, failures isolated, shown on the case page."""

from __future__ import annotations

import io
import time
import uuid
from datetime import timedelta
from unittest import mock

from django.core.files.storage import default_storage
from django.test import TestCase, TransactionTestCase, tag
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from diagnosis.models import InferenceJob, Prediction
from diagnosis.services import inference_run
from tests.support import LiveWorker, image_factories, require_rabbitmq, require_redis_broker
from tests.support.inference import InferenceFixture
from tests.support.uploads import vf_csv
from trials.file_services import case_file_upload
from trials.services import case_create, case_set_status


class JobQueueTests(InferenceFixture, TestCase):
    def setUp(self):
        self.build()
        self.addCleanup(self.cleanup)

    def test_completing_a_case_queues_one_job_per_fitting_model_after_commit(self):
        with mock.patch("diagnosis.tasks.infer_case_task.apply_async") as send:
            with self.captureOnCommitCallbacks(execute=True) as callbacks:
                case_set_status(actor=self.w.coord1, case=self.case, status="complete")
        # One dispatch of both jobs (the outbox), after the commit; the dashboard's data-version bumps
        # (evaluation.signals) run after the commit too and are not dispatches.
        dispatches = [c for c in callbacks if getattr(c, "__module__", "") != "evaluation.signals"]
        self.assertEqual(len(dispatches), 1)
        jobs = InferenceJob.objects.filter(case=self.case)
        self.assertEqual(len(send.call_args_list), 2)
        self.assertTrue(all(j.dispatched_at for j in jobs))
        self.assertEqual({j.model_version.name for j in jobs}, {"dr-test", "vf-test"})
        self.assertEqual({c.kwargs["queue"] for c in send.call_args_list}, {"gpu"})
        self.assertEqual({c.kwargs["args"][0] for c in send.call_args_list}, {str(j.pk) for j in jobs})

    def test_completing_again_does_not_duplicate_jobs(self):
        with mock.patch("diagnosis.tasks.infer_case_task.apply_async"):
            case_set_status(actor=self.w.coord1, case=self.case, status="complete")
            case_set_status(actor=self.w.coord1, case=self.case, status="open", reason="one more photo")
            case_set_status(actor=self.w.coord1, case=self.case, status="complete")
        self.assertEqual(InferenceJob.objects.filter(case=self.case).count(), 2)

    def test_retired_models_and_missing_modalities_get_no_job(self):
        from diagnosis.registry import model_set_status

        model_set_status(actor=None, model=self.vf, status="retired", reason="test")
        other = case_create(actor=self.w.coord1, subject=self.w.subject1, laterality="OS", visit_day=0)
        case_file_upload(actor=self.w.coord1, case=other, data=vf_csv("OS"))
        with mock.patch("diagnosis.tasks.infer_case_task.apply_async"):
            case_set_status(actor=self.w.coord1, case=self.case, status="complete")
            case_set_status(actor=self.w.coord1, case=other, status="complete")
        self.assertEqual(list(InferenceJob.objects.values_list("model_version__name", flat=True)), ["dr-test"])


class InferenceRunTests(InferenceFixture, TestCase):
    def setUp(self):
        self.build()
        self.addCleanup(self.cleanup)
        with mock.patch("diagnosis.tasks.infer_case_task.apply_async"):
            case_set_status(actor=self.w.coord1, case=self.case, status="complete")
        self.dr_job = InferenceJob.objects.get(case=self.case, model_version=self.dr)
        self.vf_job = InferenceJob.objects.get(case=self.case, model_version=self.vf)

    def test_dr_job_stores_probabilities_grade_attention_and_boxes(self):
        counts = inference_run(job_pk=str(self.dr_job.pk), task_id="t1")
        self.assertEqual(counts["succeeded"], 1)
        prediction = Prediction.objects.get(job=self.dr_job)
        self.assertEqual(len(prediction.class_probabilities), 5)
        self.assertAlmostEqual(sum(prediction.class_probabilities), 1.0, places=4)
        self.assertEqual(prediction.grade, max(range(5), key=lambda g: prediction.class_probabilities[g]))
        self.assertAlmostEqual(prediction.referable_probability, sum(prediction.class_probabilities[2:]), places=4)
        self.assertEqual(len(prediction.crop_boxes), 4)
        for x0, y0, x1, y1 in prediction.crop_boxes:
            self.assertTrue(-1 <= x0 < x1 <= 401 and -1 <= y0 < y1 <= 301, (x0, y0, x1, y1))
        from PIL import Image

        with default_storage.open(prediction.attention_overlay.name, "rb") as handle:
            self.assertEqual(Image.open(io.BytesIO(handle.read())).format, "PNG")
        self.dr_job.refresh_from_db()
        self.assertEqual((self.dr_job.status, self.dr_job.progress, self.dr_job.attempts), ("succeeded", 100, 1))
        self.assertGreater(prediction.runtime_ms, 0)

    def test_vf_job_gives_a_glaucoma_probability(self):
        inference_run(job_pk=str(self.vf_job.pk), task_id="t1")
        prediction = Prediction.objects.get(job=self.vf_job)
        self.assertEqual(prediction.kind, "prediction")
        self.assertTrue(0.0 <= prediction.glaucoma_probability <= 1.0)

    def test_a_job_is_never_run_twice(self):
        inference_run(job_pk=str(self.dr_job.pk), task_id="t1")
        self.assertEqual(inference_run(job_pk=str(self.dr_job.pk), task_id="t1"), {"ran": 0})
        self.assertEqual(inference_run(job_pk=str(self.dr_job.pk), task_id="t2"), {"ran": 0})
        self.assertEqual(Prediction.objects.filter(job=self.dr_job).count(), 1)

    def test_a_running_job_belongs_to_its_task_until_the_lease_ends(self):
        InferenceJob.objects.filter(pk=self.dr_job.pk).update(
            status="running", claimed_by="t-alive", lease_until=timezone.now() + timedelta(minutes=5)
        )
        self.assertEqual(inference_run(job_pk=str(self.dr_job.pk), task_id="t-other"), {"ran": 0})
        # The same message redelivered (its worker died) takes the job back.
        self.assertEqual(inference_run(job_pk=str(self.dr_job.pk), task_id="t-alive")["succeeded"], 1)

    def test_a_result_for_a_job_another_task_holds_is_dropped_with_its_overlay(self):
        from diagnosis.services import _finish, _Result
        from tests.support.storage import stored_names

        InferenceJob.objects.filter(pk=self.dr_job.pk).update(
            status="running", claimed_by="t-alive", lease_until=timezone.now() + timedelta(minutes=5)
        )
        before = stored_names("predictions")
        case_file = self.case.files.get(modality="fundus")
        self.assertFalse(_finish(self.dr_job, "t-late", [_Result(case_file, {}, overlay=b"\x89PNG overlay")]))
        self.assertEqual(stored_names("predictions"), before)
        self.assertFalse(Prediction.objects.filter(job=self.dr_job).exists())

    def test_an_expired_lease_lets_another_task_finish_the_job(self):
        InferenceJob.objects.filter(pk=self.dr_job.pk).update(
            status="running", claimed_by="t-dead", lease_until=timezone.now() - timedelta(seconds=1)
        )
        self.assertEqual(inference_run(job_pk=str(self.dr_job.pk), task_id="t-new")["succeeded"], 1)


class BatchingTests(InferenceFixture, TestCase):
    def setUp(self):
        self.build()
        self.addCleanup(self.cleanup)
        self.cases = [self.case]
        for n, eye in enumerate(("OS", "OD", "OS")):
            case = case_create(actor=self.w.coord1, subject=self.w.subject1, laterality=eye, visit_day=10 + n)
            case_file_upload(actor=self.w.coord1, case=case, data=image_factories.plain_png(400 + n, 300))
            self.cases.append(case)
        with mock.patch("diagnosis.tasks.infer_case_task.apply_async"):
            for case in self.cases:
                case_set_status(actor=self.w.coord1, case=case, status="complete")

    def test_one_task_runs_the_queued_jobs_of_its_model_as_a_batch(self):
        first = InferenceJob.objects.filter(model_version=self.dr).order_by("created_at").first()
        with mock.patch(
            "diagnosis.networks.inference.predict_fundus",
            wraps=__import__("diagnosis.networks.inference", fromlist=["predict_fundus"]).predict_fundus,
        ) as spy:
            counts = inference_run(job_pk=str(first.pk), task_id="batch-1", batch_size=8)
        self.assertEqual(counts, {"ran": 4, "succeeded": 4, "failed": 0})
        self.assertEqual(len(spy.call_args.args[1]), 4)
        self.assertEqual(Prediction.objects.filter(model_version=self.dr).count(), 4)

    def test_batch_size_bounds_a_batch(self):
        first = InferenceJob.objects.filter(model_version=self.dr).order_by("created_at").first()
        counts = inference_run(job_pk=str(first.pk), task_id="batch-1", batch_size=2)
        self.assertEqual(counts["ran"], 2)
        self.assertEqual(InferenceJob.objects.filter(model_version=self.dr, status="queued").count(), 2)

    def test_a_bad_case_fails_alone_without_poisoning_its_batch(self):
        broken = self.cases[2]
        for case_file in broken.files.all():
            default_storage.delete(case_file.content.name)
        first = InferenceJob.objects.filter(model_version=self.dr).order_by("created_at").first()
        with self.assertLogs("diagnosis.services", "WARNING") as logged:
            counts = inference_run(job_pk=str(first.pk), task_id="batch-1", batch_size=8)
        self.assertIn("failed: FileNotFoundError", logged.output[0])
        self.assertEqual((counts["succeeded"], counts["failed"]), (3, 1))
        failed = InferenceJob.objects.get(case=broken, model_version=self.dr)
        self.assertEqual(failed.status, "failed")
        self.assertTrue(failed.error)

    def test_unreliable_field_gets_a_result_without_a_probability(self):
        case = case_create(actor=self.w.coord1, subject=self.w.subject1, laterality="OD", visit_day=99)
        case_file_upload(actor=self.w.coord1, case=case, data=vf_csv("OD", fp=40))
        with mock.patch("diagnosis.tasks.infer_case_task.apply_async"):
            case_set_status(actor=self.w.coord1, case=case, status="complete")
        job = InferenceJob.objects.get(case=case, model_version=self.vf)
        inference_run(job_pk=str(job.pk), task_id="t")
        prediction = Prediction.objects.get(job=job)
        self.assertEqual(prediction.kind, "unreliable_field")
        self.assertIsNone(prediction.glaucoma_probability)
        self.assertIn("false_positives", prediction.details["reasons"])


class CasePageInferenceTests(InferenceFixture, TestCase):
    def setUp(self):
        self.build()
        self.addCleanup(self.cleanup)
        with mock.patch("diagnosis.tasks.infer_case_task.apply_async"):
            case_set_status(actor=self.w.coord1, case=self.case, status="complete")

    def test_case_page_shows_progress_then_predictions_and_the_fused_probability(self):
        self.client.force_login(self.w.manager)
        url = reverse("trials:case-detail", args=[self.case.pk])
        page = self.client.get(url)
        self.assertContains(page, 'data-testid="inference-jobs"')
        self.assertContains(page, "data-poll-url")
        self.assertContains(page, "not for clinical use")
        for job in InferenceJob.objects.filter(case=self.case):
            inference_run(job_pk=str(job.pk), task_id="t")
        page = self.client.get(url)
        self.assertContains(page, 'data-testid="predicted-grade"')
        self.assertContains(page, 'data-testid="overlay-viewer"')
        self.assertContains(page, 'data-testid="glaucoma-probability"')
        self.assertContains(page, 'data-testid="fused-glaucoma"')
        self.assertNotContains(page, "data-poll-url")
        prediction = Prediction.objects.get(model_version=self.dr)
        overlay = self.client.get(reverse("diagnosis:prediction-overlay", args=[prediction.pk]))
        self.assertIn(overlay.status_code, (200, 302))

    def test_jobs_api_is_scoped_and_failures_show_their_reason(self):
        job = InferenceJob.objects.get(model_version=self.dr)
        for case_file in self.case.files.filter(modality="fundus"):
            default_storage.delete(case_file.content.name)
        with self.assertLogs("diagnosis.services", "WARNING"):
            inference_run(job_pk=str(job.pk), task_id="t")
        client = APIClient()
        client.force_authenticate(self.w.coord1)
        jobs = client.get(reverse("api:diagnosis:case-job-list", args=[self.case.pk])).json()
        failed = next(j for j in jobs if j["id"] == str(job.pk))
        self.assertEqual(failed["status"], "failed")
        self.assertTrue(failed["error"])
        client.force_authenticate(self.w.coord2)
        self.assertEqual(client.get(reverse("api:diagnosis:case-job-list", args=[self.case.pk])).status_code, 404)
        prediction_url = reverse("api:diagnosis:case-prediction-list", args=[self.case.pk])
        self.assertEqual(client.get(prediction_url).status_code, 404)
        client.force_authenticate(self.w.reader)
        self.assertEqual(client.get(prediction_url).status_code, 403)


@tag("redis", "worker")
class LiveWorkerInferenceTests(InferenceFixture, TransactionTestCase):
    """A case completed here is read by both nets in a real worker process on Redis."""

    def setUp(self):
        broker = require_redis_broker()
        self.build()
        self.addCleanup(self.cleanup)
        self.worker = LiveWorker(broker_url=broker, queues="gpu,default").start()
        self.addCleanup(self.worker.stop)
        from platform_core.celery import app

        self.worker.wait_ready(app)

    def test_completed_case_gets_predictions_from_both_nets_through_the_worker(self):
        case_set_status(actor=self.w.coord1, case=self.case, status="complete")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if InferenceJob.objects.filter(case=self.case, status__in=["queued", "running"]).count() == 0:
                break
            time.sleep(0.5)
        jobs = {j.model_version.name: j for j in InferenceJob.objects.filter(case=self.case)}
        self.assertEqual(
            {name: j.status for name, j in jobs.items()},
            {"dr-test": "succeeded", "vf-test": "succeeded"},
            self.worker.log_tail(),
        )
        self.assertEqual(Prediction.objects.filter(case=self.case).count(), 2)
        self.assertNotEqual(jobs["dr-test"].worker.split(":")[1], str(__import__("os").getpid()))


@tag("rabbitmq", "worker")
class WorkerKilledMidJobTests(InferenceFixture, TransactionTestCase):
    """SIGKILL a worker while it holds a job: after restart the job completes exactly once.

    RabbitMQ requeues an unacknowledged message as soon as the dead worker's connection drops, and the
    task is acked late, so the restarted worker gets the same message (same task id) and takes the job back.
    """

    def test_job_completes_exactly_once_after_the_worker_is_killed(self):
        rabbit = require_rabbitmq()
        require_redis_broker()  # results travel through Redis
        self.build()
        self.addCleanup(self.cleanup)
        from diagnosis.tasks import infer_case_task

        job = InferenceJob.objects.create(case=self.case, model_version=self.dr)
        queue = f"gpu-test-{uuid.uuid4().hex[:8]}"  # a private queue: no other test's messages
        first = LiveWorker(
            broker_url=rabbit, queues=queue, extra_env={"VISUS_INFERENCE_SLOWDOWN_SECONDS": "60"}
        ).start()
        self.addCleanup(first.stop)
        first.send(infer_case_task, [str(job.pk)], queue=queue)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and InferenceJob.objects.get(pk=job.pk).status != "running":
            time.sleep(0.2)
        job.refresh_from_db()
        self.assertEqual(job.status, "running", first.log_tail())
        task_id = job.claimed_by
        first.kill()

        second = LiveWorker(broker_url=rabbit, queues=queue).start()
        self.addCleanup(second.stop)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and InferenceJob.objects.get(pk=job.pk).status == "running":
            time.sleep(0.5)
        job.refresh_from_db()
        self.assertEqual(job.status, "succeeded", second.log_tail())
        self.assertEqual(job.attempts, 2)
        self.assertEqual(job.claimed_by, task_id)
        self.assertEqual(Prediction.objects.filter(job=job).count(), 1)
        time.sleep(1)
        self.assertEqual(Prediction.objects.filter(job=job).count(), 1)
