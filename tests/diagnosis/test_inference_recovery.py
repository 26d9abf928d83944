"""What goes wrong around inference: batch failures, retries, changed files, retired models, blind readers,
and malformed checkpoints. Every case ends with no job stuck "running", an audit trail, and nothing stale."""

from __future__ import annotations

import io
from unittest import mock

import torch
from celery.exceptions import SoftTimeLimitExceeded
from django.core.exceptions import ValidationError
from django.test import SimpleTestCase, TestCase
from django.urls import reverse
from rest_framework.test import APIClient

from diagnosis.models import InferenceJob, ModelVersion, Prediction
from diagnosis.networks.inference import ItemError, run_in_batches
from diagnosis.registry import model_register, model_set_status
from diagnosis.selectors import predictions_for
from diagnosis.services import inference_run
from platform_core.accounts.models import Membership, Role
from platform_core.audit.models import AuditEvent
from platform_core.errors import ApplicationError
from tests.support import image_factories
from tests.support.inference import InferenceFixture
from tests.support.registry import CARD, checkpoint_bytes, small_dr_network
from tests.support.storage import stored_names
from trials.file_services import case_file_upload
from trials.services import case_create, case_set_status


def complete(case, actor, reason=""):
    """Complete the case; returns the mock the jobs were sent through (after commit)."""
    with (
        mock.patch("diagnosis.tasks.infer_case_task.apply_async") as send,
        TestCase.captureOnCommitCallbacks(execute=True),
    ):
        case_set_status(actor=actor, case=case, status="complete", reason=reason)
    return send


def complete_and_run(case, actor):
    complete(case, actor)
    for job in InferenceJob.objects.filter(case=case):
        inference_run(job_pk=str(job.pk), task_id="t")


class BatchFailureTests(InferenceFixture, TestCase):
    def setUp(self):
        self.build()
        self.addCleanup(self.cleanup)
        self.cases = [self.case]
        for n in range(2):
            case = case_create(actor=self.w.coord1, subject=self.w.subject1, laterality="OS", visit_day=20 + n)
            case_file_upload(actor=self.w.coord1, case=case, data=image_factories.plain_png(410 + n, 300))
            self.cases.append(case)
        for case in self.cases:
            complete(case, self.w.coord1)
        self.first = InferenceJob.objects.filter(model_version=self.dr).order_by("created_at").first()

    def statuses(self):
        return sorted(InferenceJob.objects.filter(model_version=self.dr).values_list("status", flat=True))

    def test_a_result_that_cannot_be_stored_fails_its_job_alone(self):
        from platform_core.storage import save_private

        calls = {"n": 0}

        def flaky(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError("storage refused the write")
            return save_private(*args, **kwargs)

        with (
            mock.patch("diagnosis.services.save_private", side_effect=flaky),
            self.assertLogs("diagnosis.services", "WARNING") as logged,
        ):
            counts = inference_run(job_pk=str(self.first.pk), task_id="t", batch_size=8)
        self.assertIn("failed: the result could not be stored", logged.output[0])
        self.assertEqual((counts["succeeded"], counts["failed"]), (2, 1))
        self.assertEqual(self.statuses(), ["failed", "succeeded", "succeeded"])
        failed = InferenceJob.objects.get(model_version=self.dr, status="failed")
        self.assertIn("could not be stored: OSError", failed.error)
        self.assertFalse(Prediction.objects.filter(job=failed).exists())

    def test_an_error_that_stops_the_batch_fails_every_claimed_job_and_is_raised(self):
        with (
            mock.patch("diagnosis.networks.inference.predict_fundus", side_effect=RuntimeError("CUDA error: OOM")),
            self.assertRaises(RuntimeError),
            self.assertLogs("diagnosis.services", "WARNING") as logged,
        ):
            inference_run(job_pk=str(self.first.pk), task_id="t", batch_size=8)
        self.assertEqual(len(logged.output), 3)
        self.assertEqual(self.statuses(), ["failed", "failed", "failed"])
        for job in InferenceJob.objects.filter(model_version=self.dr):
            self.assertIn("the batch stopped: RuntimeError: CUDA error: OOM", job.error)
        self.assertEqual(AuditEvent.objects.filter(action="inference_job.fail").count(), 3)

    def test_the_time_limit_stops_the_batch_instead_of_failing_one_item(self):
        # Raised inside the network's forward step, where run_in_batches would isolate an ordinary error.
        with mock.patch("diagnosis.networks.inference.FundusPrediction", side_effect=SoftTimeLimitExceeded()):
            with self.assertRaises(SoftTimeLimitExceeded), self.assertLogs("diagnosis.services", "WARNING") as logged:
                inference_run(job_pk=str(self.first.pk), task_id="t", batch_size=8)
        self.assertIn("failed: the worker's time limit ran out", logged.output[0])
        self.assertEqual(self.statuses(), ["failed", "failed", "failed"])
        self.assertEqual(
            set(InferenceJob.objects.filter(model_version=self.dr).values_list("error", flat=True)),
            {"the worker's time limit ran out"},
        )

    def test_a_failed_job_runs_again_when_the_case_is_completed_again(self):
        job = InferenceJob.objects.get(case=self.case, model_version=self.dr)
        with mock.patch("diagnosis.networks.inference.predict_fundus", side_effect=RuntimeError("boom")):
            with self.assertRaises(RuntimeError), self.assertLogs("diagnosis.services", "WARNING"):
                inference_run(job_pk=str(job.pk), task_id="t", batch_size=1)
        job.refresh_from_db()
        self.assertEqual(job.status, "failed")
        case_set_status(actor=self.w.coord1, case=self.case, status="open", reason="models failed; run again")
        send = complete(self.case, self.w.coord1, reason="run the failed model again")
        vf_job = InferenceJob.objects.get(case=self.case, model_version=self.vf)  # never ran: still queued
        sent = sorted(c.kwargs["args"][0] for c in send.call_args_list)
        self.assertEqual(sent, sorted([str(job.pk), str(vf_job.pk)]))  # no job that succeeded is sent again
        job.refresh_from_db()
        self.assertEqual((job.status, job.error), ("queued", ""))
        retry = AuditEvent.objects.get(action="inference_job.retry")
        self.assertIn("boom", retry.reason)
        self.assertEqual(retry.changes["status"], ["failed", "queued"])
        self.assertEqual(inference_run(job_pk=str(job.pk), task_id="t2", batch_size=1)["succeeded"], 1)
        self.assertEqual(InferenceJob.objects.filter(case=self.case, model_version=self.dr).count(), 1)


class WorkerDied(BaseException):
    """Stands for SIGKILL: nothing in inference_run handles it, so its claimed jobs stay running."""


class BatchMatesOfACrashingJobTests(InferenceFixture, TestCase):
    """A job that kills its worker on every try costs the healthy jobs batched with it one attempt, never a failure."""

    def setUp(self):
        self.build()
        self.addCleanup(self.cleanup)
        for n in range(2):
            case = case_create(actor=self.w.coord1, subject=self.w.subject1, laterality="OS", visit_day=20 + n)
            case_file_upload(actor=self.w.coord1, case=case, data=image_factories.plain_png(410 + n, 300))
            complete(case, self.w.coord1)
        complete(self.case, self.w.coord1)
        self.crashing, *self.healthy = InferenceJob.objects.filter(model_version=self.dr).order_by("created_at")
        self.assertEqual(len(self.healthy), 2)

    def deliver(self, job, task_id):
        """One delivery of the job's message; returns the job ids sent a message of their own meanwhile."""
        from diagnosis import services

        real = services._run_claimed

        def run(jobs, *args):
            if any(j.pk == self.crashing.pk for j in jobs):
                raise WorkerDied
            return real(jobs, *args)

        with (
            mock.patch("diagnosis.services._run_claimed", side_effect=run),
            mock.patch("diagnosis.tasks.infer_case_task.apply_async") as send,
            self.captureOnCommitCallbacks(execute=True),
        ):
            try:
                inference_run(job_pk=str(job.pk), task_id=task_id, batch_size=8)
            except WorkerDied:
                pass
        self.countdowns = {c.kwargs["args"][0]: c.kwargs["countdown"] for c in send.call_args_list}
        return sorted(c.kwargs["args"][0] for c in send.call_args_list)

    def leases_end(self):
        """Time passes beyond every lease (a dead worker's message comes back after the broker's visibility
        timeout, longer than the lease)."""
        from datetime import timedelta

        from django.utils import timezone

        InferenceJob.objects.filter(lease_until__isnull=False).update(lease_until=timezone.now() - timedelta(seconds=1))

    def test_a_job_that_keeps_killing_its_worker_fails_alone(self):

        from diagnosis.models import INFERENCE_MAX_ATTEMPTS

        self.deliver(self.crashing, "m1")  # the batch of three dies with its worker
        self.assertEqual(
            set(InferenceJob.objects.filter(model_version=self.dr).values_list("attempts", flat=True)), {1}
        )
        # The broker redelivers the same message until the job's count stops it.
        self.leases_end()
        with self.assertLogs("diagnosis.services", "WARNING") as logged:
            sent = self.deliver(self.crashing, "m1")
            countdowns = set(self.countdowns.values())  # put back at once: their leases had ended
            for _ in range(INFERENCE_MAX_ATTEMPTS - 1):
                self.leases_end()
                self.assertEqual(self.deliver(self.crashing, "m1"), [])
        self.crashing.refresh_from_db()
        self.assertEqual((self.crashing.status, self.crashing.attempts), ("failed", INFERENCE_MAX_ATTEMPTS))
        self.assertIn(f"gave up after {INFERENCE_MAX_ATTEMPTS} attempts", self.crashing.error)
        # Long after, whatever the leases were, each healthy job's own message runs it alone, and it succeeds.
        self.leases_end()
        for job in self.healthy:
            self.deliver(job, f"own-{job.pk}")
            job.refresh_from_db()
            self.assertEqual((job.status, job.attempts, job.error), ("succeeded", 2, ""))
        self.assertIn("2 batch-mate(s) of its job run alone", logged.output[0])
        self.assertEqual(sent, sorted(str(j.pk) for j in self.healthy))  # each put back with a message of its own
        self.assertEqual(countdowns, {None})

    def test_a_message_delivered_again_while_its_batch_is_under_lease_leaves_the_batch_mates_to_their_holder(self):
        from django.conf import settings

        self.deliver(self.crashing, "m1")
        # The broker delivers the message again at once: its first worker may be alive and running the batch.
        with self.assertLogs("diagnosis.services", "WARNING") as logged:
            sent = self.deliver(self.crashing, "m1")
        self.assertIn("2 batch-mate(s) of its job are under their lease", logged.output[0])
        for job in self.healthy:
            job.refresh_from_db()
            self.assertEqual((job.status, job.claimed_by, job.attempts), ("running", "m1", 1))
        # Each mate has a message for when its lease ends, not before.
        self.assertEqual(sent, sorted(str(j.pk) for j in self.healthy))
        lease = settings.VISUS_INFERENCE_LEASE_SECONDS
        for countdown in self.countdowns.values():
            self.assertTrue(lease - 60 < countdown <= lease + 1, countdown)
        # That message early finds its mate held; once the lease has ended it takes the mate a dead holder left.
        early, late = self.healthy
        self.assertEqual(inference_run(job_pk=str(early.pk), task_id=f"own-{early.pk}", batch_size=8), {"ran": 0})
        self.leases_end()
        self.deliver(early, f"own-{early.pk}")
        early.refresh_from_db()
        self.assertEqual((early.status, early.attempts), ("succeeded", 2))
        # A holder that finished its mate first leaves the message nothing to do.
        InferenceJob.objects.filter(pk=late.pk).update(status="succeeded")
        self.assertEqual(inference_run(job_pk=str(late.pk), task_id=f"own-{late.pk}", batch_size=8), {"ran": 0})
        self.assertEqual(InferenceJob.objects.get(pk=late.pk).attempts, 1)

    def test_a_job_with_an_attempt_counted_is_never_batched(self):
        # The healthy jobs put back after the crash are not taken by another message's batch either.
        self.deliver(self.crashing, "m1")
        self.leases_end()
        with self.assertLogs("diagnosis.services", "WARNING"):
            self.deliver(self.crashing, "m1")
        fresh = InferenceJob.objects.filter(model_version=self.dr, status="queued").first()
        InferenceJob.objects.filter(pk=fresh.pk).update(attempts=0)
        self.assertEqual(
            inference_run(job_pk=str(fresh.pk), task_id="other", batch_size=8), {"ran": 1, "succeeded": 1, "failed": 0}
        )
        self.assertEqual(InferenceJob.objects.filter(model_version=self.dr, status="queued").count(), 1)

    def test_a_transient_error_puts_the_batch_mates_back_with_a_backoff_and_a_message_each(self):
        from datetime import timedelta

        from django.utils import timezone

        first, *mates = self.healthy[0], self.healthy[1], self.crashing
        blip = mock.patch("diagnosis.networks.inference.predict_fundus", side_effect=ConnectionError("storage blip"))
        with (
            blip,
            mock.patch("diagnosis.tasks.infer_case_task.apply_async") as send,
            self.captureOnCommitCallbacks(execute=True),
            self.assertRaises(ConnectionError),
        ):
            inference_run(
                job_pk=str(first.pk), task_id="t", batch_size=8, retryable=(ConnectionError,), final_attempt=False
            )
        self.assertEqual(sorted(c.kwargs["args"][0] for c in send.call_args_list), sorted(str(j.pk) for j in mates))
        self.assertEqual({c.kwargs["countdown"] for c in send.call_args_list}, {3})
        for job in [first, *mates]:
            job.refresh_from_db()
            self.assertEqual((job.status, job.attempts, job.claimed_by), ("queued", 1, ""))
        # A mate's earlier message arriving now finds it waiting; the task's retry runs its own job alone.
        self.assertEqual(inference_run(job_pk=str(mates[0].pk), task_id="early", batch_size=8), {"ran": 0})
        self.assertEqual(inference_run(job_pk=str(first.pk), task_id="t", batch_size=8)["ran"], 1)
        InferenceJob.objects.filter(pk__in=[j.pk for j in mates]).update(
            lease_until=timezone.now() - timedelta(seconds=1)
        )
        for job in mates:
            self.assertEqual(inference_run(job_pk=str(job.pk), task_id=f"later-{job.pk}", batch_size=8)["ran"], 1)
        self.assertEqual(
            set(InferenceJob.objects.filter(model_version=self.dr).values_list("status", flat=True)), {"succeeded"}
        )


class RetryAndTimeLimitTests(InferenceFixture, TestCase):
    def setUp(self):
        self.build()
        self.addCleanup(self.cleanup)
        complete(self.case, self.w.coord1)
        self.job = InferenceJob.objects.get(case=self.case, model_version=self.dr)

    def test_a_transient_error_puts_the_jobs_back_for_the_tasks_retry_and_fails_them_on_the_last(self):
        blip = mock.patch("diagnosis.networks.inference.predict_fundus", side_effect=ConnectionError("storage blip"))
        with blip, self.assertRaises(ConnectionError):
            inference_run(job_pk=str(self.job.pk), task_id="t", retryable=(ConnectionError,), final_attempt=False)
        self.job.refresh_from_db()
        self.assertEqual((self.job.status, self.job.claimed_by), ("queued", ""))
        retried = inference_run(job_pk=str(self.job.pk), task_id="t", retryable=(ConnectionError,))  # the retry
        self.assertEqual(retried["succeeded"], 1)
        other = InferenceJob.objects.get(case=self.case, model_version=self.vf)
        with (
            mock.patch("diagnosis.networks.inference.predict_visual_fields", side_effect=ConnectionError("again")),
            self.assertRaises(ConnectionError),
            self.assertLogs("diagnosis.services", "WARNING"),
        ):
            inference_run(job_pk=str(other.pk), task_id="t2", retryable=(ConnectionError,), final_attempt=True)
        other.refresh_from_db()
        self.assertEqual(other.status, "failed")

    def test_redispatched_messages_share_the_jobs_attempts_and_stop_at_the_bound(self):
        # Each message the re-dispatch sends starts Celery's retry count at 0: the job's own count bounds them.
        from diagnosis.models import INFERENCE_MAX_ATTEMPTS
        from diagnosis.services import AttemptsExhausted

        blip = mock.patch("diagnosis.networks.inference.predict_fundus", side_effect=ConnectionError("storage blip"))
        with blip:
            for n in range(1, INFERENCE_MAX_ATTEMPTS):
                with self.subTest(attempt=n), self.assertRaises(ConnectionError):
                    inference_run(
                        job_pk=str(self.job.pk), task_id=f"m{n}", retryable=(ConnectionError,), final_attempt=False
                    )
                self.job.refresh_from_db()
                self.assertEqual((self.job.status, self.job.attempts), ("queued", n))
            with self.assertRaises(AttemptsExhausted), self.assertLogs("diagnosis.services", "WARNING"):
                inference_run(
                    job_pk=str(self.job.pk), task_id="last", retryable=(ConnectionError,), final_attempt=False
                )
        self.job.refresh_from_db()
        self.assertEqual((self.job.status, self.job.attempts), ("failed", INFERENCE_MAX_ATTEMPTS))
        self.assertIn(f"after {INFERENCE_MAX_ATTEMPTS} attempts", self.job.error)
        self.assertEqual(
            inference_run(job_pk=str(self.job.pk), task_id="late", retryable=(ConnectionError,)), {"ran": 0}
        )
        # Completing the case again queues it with a fresh count, and it runs.
        case_set_status(actor=self.w.coord1, case=self.case, status="open", reason="storage is back")
        complete(self.case, self.w.coord1, reason="run the model again")
        self.job.refresh_from_db()
        self.assertEqual((self.job.status, self.job.attempts), ("queued", 0))
        self.assertEqual(inference_run(job_pk=str(self.job.pk), task_id="again", batch_size=1)["succeeded"], 1)

    def test_the_task_does_not_retry_a_job_whose_attempts_are_spent(self):
        # A fresh message (retries 0) for a job that already had its attempts: one try, then failed, no retry.
        from diagnosis.models import INFERENCE_MAX_ATTEMPTS
        from diagnosis.services import AttemptsExhausted
        from diagnosis.tasks import infer_case_task

        InferenceJob.objects.filter(pk=self.job.pk).update(attempts=INFERENCE_MAX_ATTEMPTS - 1)
        calls = []

        def blip(*args, **kwargs):
            calls.append(1)
            raise ConnectionError("storage blip")

        with (
            mock.patch("diagnosis.networks.inference.predict_fundus", side_effect=blip),
            self.assertLogs("diagnosis.services", "WARNING"),
        ):
            result = infer_case_task.apply(args=[str(self.job.pk)])
        self.assertIsInstance(result.result, AttemptsExhausted)
        self.assertEqual(len(calls), 1)
        self.job.refresh_from_db()
        self.assertEqual((self.job.status, self.job.attempts), ("failed", INFERENCE_MAX_ATTEMPTS))

    def test_a_job_whose_worker_keeps_dying_is_failed_at_the_bound(self):
        # Every redelivery after a worker's death claims the job again: the bound stops a job that kills its worker.
        from datetime import timedelta

        from django.utils import timezone

        from diagnosis.models import INFERENCE_MAX_ATTEMPTS

        InferenceJob.objects.filter(pk=self.job.pk).update(
            status="running",
            claimed_by="same-message",
            attempts=INFERENCE_MAX_ATTEMPTS,
            lease_until=timezone.now() + timedelta(minutes=5),
        )
        with self.assertLogs("diagnosis.services", "WARNING"):
            self.assertEqual(inference_run(job_pk=str(self.job.pk), task_id="same-message"), {"ran": 0})
        self.job.refresh_from_db()
        self.assertEqual(self.job.status, "failed")
        self.assertIn(f"after {INFERENCE_MAX_ATTEMPTS} attempts", self.job.error)
        self.assertTrue(AuditEvent.objects.filter(action="inference_job.fail", object_id=str(self.job.pk)).exists())

    def test_the_time_limit_while_reading_a_case_stops_the_batch(self):
        with (
            mock.patch("diagnosis.services._fundus_image", side_effect=SoftTimeLimitExceeded()),
            self.assertRaises(SoftTimeLimitExceeded),
            self.assertLogs("diagnosis.services", "WARNING"),
        ):
            inference_run(job_pk=str(self.job.pk), task_id="t")
        self.job.refresh_from_db()
        self.assertEqual((self.job.status, self.job.error), ("failed", "the worker's time limit ran out"))

    def test_a_job_left_running_past_its_lease_is_queued_again_when_the_case_is_completed_again(self):
        from datetime import timedelta

        from django.utils import timezone

        InferenceJob.objects.filter(pk=self.job.pk).update(
            status="running", claimed_by="dead-task", lease_until=timezone.now() - timedelta(minutes=1)
        )
        case_set_status(actor=self.w.coord1, case=self.case, status="open", reason="stuck job")
        send = complete(self.case, self.w.coord1, reason="run it again")
        self.assertIn(str(self.job.pk), [c.kwargs["args"][0] for c in send.call_args_list])
        self.job.refresh_from_db()
        self.assertEqual(self.job.status, "queued")
        retry = AuditEvent.objects.get(action="inference_job.retry", object_id=str(self.job.pk))
        self.assertEqual(retry.changes["status"], ["running", "queued"])


class ChangedFilesTests(InferenceFixture, TestCase):
    def setUp(self):
        self.build()
        self.addCleanup(self.cleanup)
        complete_and_run(self.case, self.w.coord1)

    def test_new_files_give_new_jobs_and_the_old_predictions_are_no_longer_shown(self):
        old_dr = InferenceJob.objects.get(case=self.case, model_version=self.dr)
        old_vf = InferenceJob.objects.get(case=self.case, model_version=self.vf)
        case_set_status(actor=self.w.coord1, case=self.case, status="open", reason="a sharper photograph")
        case_file_upload(actor=self.w.coord1, case=self.case, data=image_factories.plain_png(640, 480))
        send = complete(self.case, self.w.coord1, reason="photograph added")
        new_dr = InferenceJob.objects.get(case=self.case, model_version=self.dr, is_current=True)
        self.assertNotEqual(new_dr.pk, old_dr.pk)
        self.assertEqual([c.kwargs["args"][0] for c in send.call_args_list], [str(new_dr.pk)])  # VF unchanged
        old_dr.refresh_from_db()
        old_vf.refresh_from_db()
        self.assertFalse(old_dr.is_current)
        self.assertTrue(old_vf.is_current)
        self.assertTrue(AuditEvent.objects.filter(action="inference_job.supersede", object_id=str(old_dr.pk)).exists())
        inference_run(job_pk=str(new_dr.pk), task_id="t3")
        shown = predictions_for(self.w.coord1).filter(case=self.case)
        self.assertEqual({p.job_id for p in shown}, {new_dr.pk, old_vf.pk})
        # The new job reads both photographs, each with its own prediction naming its file.
        dr_shown = shown.filter(model_version=self.dr).order_by("case_file__created_at")
        self.assertEqual([p.details["image_size"] for p in dr_shown], [[400, 300], [640, 480]])
        self.assertEqual(
            [p.case_file_id for p in dr_shown],
            list(self.case.files.filter(modality="fundus").order_by("created_at").values_list("pk", flat=True)),
        )
        self.assertTrue(Prediction.objects.filter(job=old_dr).exists())  # kept in the record
        page = self.client
        page.force_login(self.w.coord1)
        context = page.get(reverse("trials:case-detail", args=[self.case.pk])).context
        self.assertEqual(len(context["predictions"]), 3)
        self.assertEqual([len(r.files) for r in context["model_results"]], [2, 1])


class RetiredModelTests(InferenceFixture, TestCase):
    def test_a_job_of_a_model_retired_after_queueing_fails_with_the_reason(self):
        self.build()
        self.addCleanup(self.cleanup)
        complete(self.case, self.w.coord1)
        model_set_status(actor=None, model=self.dr, status="retired", reason="superseded by v2")
        job = InferenceJob.objects.get(case=self.case, model_version=self.dr)
        self.assertEqual(inference_run(job_pk=str(job.pk), task_id="t"), {"ran": 0})
        job.refresh_from_db()
        self.assertEqual((job.status, job.error), ("failed", "the model was retired before the job ran"))
        self.assertFalse(Prediction.objects.filter(job=job).exists())


class AuditedResultsTests(InferenceFixture, TestCase):
    def test_each_prediction_and_failure_is_in_the_audit_trail(self):
        self.build()
        self.addCleanup(self.cleanup)
        complete_and_run(self.case, self.w.coord1)
        events = AuditEvent.objects.filter(action="inference_job.succeed")
        self.assertEqual(events.count(), 2)
        prediction_ids = {str(pk) for pk in Prediction.objects.values_list("pk", flat=True)}
        self.assertEqual({pk for e in events for pk in e.changes["predictions"][1]}, prediction_ids)
        self.assertEqual({e.hospital_code for e in events}, {"H01"})


class BlindReaderTests(InferenceFixture, TestCase):
    """A reader of a trial never sees its AI outputs, even when they also coordinate at the site."""

    def setUp(self):
        self.build()
        self.addCleanup(self.cleanup)
        complete_and_run(self.case, self.w.coord1)
        Membership.objects.create(user=self.w.coord1, hospital=self.w.h1, role=Role.READER)

    def test_page_api_and_overlay_hide_the_ai_from_a_coordinator_who_also_reads(self):
        self.client.force_login(self.w.coord1)
        page = self.client.get(reverse("trials:case-detail", args=[self.case.pk]))
        self.assertContains(page, 'data-testid="blinded"')
        self.assertNotContains(page, 'data-testid="prediction"')
        self.assertNotContains(page, 'data-testid="fused-glaucoma"')
        api = APIClient()
        api.force_authenticate(self.w.coord1)
        for name in ("api:diagnosis:case-prediction-list", "api:diagnosis:case-job-list"):
            response = api.get(reverse(name, args=[self.case.pk]))
            self.assertEqual(response.status_code, 403, name)
            self.assertIn("blind reading", response.json()["error"]["message"])
        prediction = Prediction.objects.filter(case=self.case).first()
        overlay = self.client.get(reverse("diagnosis:prediction-overlay", args=[prediction.pk]))
        self.assertEqual(overlay.status_code, 404)
        # The manager, who does not read, still sees them.
        self.client.force_login(self.w.manager)
        self.assertContains(
            self.client.get(reverse("trials:case-detail", args=[self.case.pk])), 'data-testid="prediction"'
        )


class MalformedCheckpointTests(TestCase):
    def setUp(self):
        self.before = stored_names("models")

    def tearDown(self):
        from django.core.files.storage import default_storage

        for model in ModelVersion.objects.all():
            default_storage.delete(model.weights.name)

    def register(self, weights, card=CARD, **kwargs):
        return model_register(actor=None, name="m", version="1", weights=weights, model_card=card, **kwargs)

    def test_incomplete_or_non_tensor_checkpoints_get_a_clear_error_and_leave_nothing(self):
        network = small_dr_network()
        good = torch.load(io.BytesIO(checkpoint_bytes(network)), weights_only=True)

        def saved(payload):
            buffer = io.BytesIO()
            torch.save(payload, buffer)
            return buffer.getvalue()

        cases = {
            "no state_dict": ({k: v for k, v in good.items() if k != "state_dict"}, "has no state_dict"),
            "no config": ({k: v for k, v in good.items() if k != "config"}, "has no config"),
            "non-tensor entry": ({**good, "state_dict": {"a": 1}}, "holds int at 'a'"),
            "state dict a list": ({**good, "state_dict": [1, 2]}, "empty or not a mapping"),
            "plain dict of numbers": ({"weight": 3.0}, "holds float at 'weight'"),
        }
        for label, (payload, message) in cases.items():
            with self.subTest(label), self.assertRaisesMessage(ApplicationError, message):
                self.register(saved(payload))
        self.assertFalse(ModelVersion.objects.exists())
        self.assertEqual(stored_names("models"), self.before)

    def test_model_card_types_are_checked(self):
        weights = checkpoint_bytes(small_dr_network())
        for card, message in (
            ({**CARD, "intended_use": "  "}, "intended_use must be a non-empty text"),
            ({**CARD, "not_for_clinical_use": "false"}, "not_for_clinical_use must be true or false"),
            ({**CARD, "metrics": [0.9]}, "metrics must be an object"),
            ([], "must be a JSON object"),
        ):
            with self.subTest(card=card), self.assertRaisesMessage(ValidationError, message):
                self.register(weights, card)
        self.assertFalse(ModelVersion.objects.exists())

    def test_an_expected_hash_refuses_a_different_file(self):
        import hashlib

        weights = checkpoint_bytes(small_dr_network())
        with self.assertRaisesMessage(ApplicationError, "not the " + "0" * 64):
            self.register(weights, expected_sha256="0" * 64)
        self.assertEqual(stored_names("models"), self.before)
        model = self.register(weights, expected_sha256=hashlib.sha256(weights).hexdigest().upper())
        self.assertEqual(model.sha256, hashlib.sha256(weights).hexdigest())


class PropagateTests(SimpleTestCase):
    def test_ordinary_errors_fail_one_item_but_propagated_ones_stop_the_run(self):
        def forward(batch):
            if 2 in batch:
                raise ValueError("bad item")
            return [x * 10 for x in batch]

        results = run_in_batches([1, 2, 3], lambda x: x, forward, batch_size=3)
        self.assertEqual(results[0], 10)
        self.assertIsInstance(results[1], ItemError)
        self.assertEqual(results[2], 30)

        def stopped(batch):
            raise SoftTimeLimitExceeded()

        with self.assertRaises(SoftTimeLimitExceeded):
            run_in_batches([1, 2], lambda x: x, stopped, batch_size=2, propagate=(SoftTimeLimitExceeded,))


class DigestMigrationTests(InferenceFixture, TestCase):
    def test_jobs_from_before_digests_get_their_files_digest_and_are_not_rerun(self):
        import importlib

        from django.apps import apps

        from diagnosis.services import input_digests

        self.build()
        self.addCleanup(self.cleanup)
        complete(self.case, self.w.coord1)
        InferenceJob.objects.filter(case=self.case).update(input_digest="")
        importlib.import_module("diagnosis.migrations.0004_fill_input_digests").fill(apps, None)
        digests = input_digests(self.case)
        self.assertEqual(InferenceJob.objects.get(model_version=self.dr).input_digest, digests["fundus"])
        self.assertEqual(InferenceJob.objects.get(model_version=self.vf).input_digest, digests["visual_field"])
