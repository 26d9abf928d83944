"""Inference jobs and the audit chain's lock (PostgreSQL, real threads): a case completed again (same files) while a
worker finishes, fails or claims its job, and a model card updated while a case queues a job of that model. Both
finish, in either order, and the trail verifies.

Completing a case holds the audit chain's lock (its event) when ``inference_jobs_queue`` locks the case's jobs. A
worker's ``_finish`` and ``_fail`` locked the job first, then waited for the chain's lock to record the outcome: a
deadlock; so did a claim that fails a job (model retired, attempts spent). A card update locked the model version FOR
UPDATE, then waited for the chain's lock, while the completion, holding it, checked at its commit the new job's
foreign key to that version (FOR KEY SHARE, which FOR UPDATE blocks): a deadlock too."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

from django.test import TransactionTestCase
from django.utils import timezone

from diagnosis import services
from diagnosis.models import INFERENCE_MAX_ATTEMPTS, InferenceJob
from diagnosis.registry import model_card_update
from platform_core.audit.models import AuditEvent
from platform_core.audit.services import audit_chain_lock, audit_verify
from tests.support import require_postgresql
from tests.support.inference import InferenceFixture
from tests.support.races import paused_race, while_held
from trials.services import case_set_status


class RaceFixture(InferenceFixture, TransactionTestCase):
    """The inference fixture on PostgreSQL with no task sent (and, with ``quiet``, the failures' warnings muted)."""

    quiet = False

    def setUp(self):
        require_postgresql()
        patches = [mock.patch("diagnosis.tasks.infer_case_task.apply_async")]
        if self.quiet:
            patches.append(mock.patch("diagnosis.services.logger"))
        for patch in patches:
            patch.start()
            self.addCleanup(patch.stop)
        self.build()
        self.addCleanup(self.cleanup)


class JobWhileTheCaseIsCompletedAgainTests(RaceFixture):
    """A complete case whose fundus job a worker claimed (task "t"); the coordinator reopened the case and completes it
    again with the same files while the worker records the job's outcome."""

    quiet = True

    def setUp(self):
        super().setUp()
        case_set_status(actor=self.w.coord1, case=self.case, status="complete")
        self.job = InferenceJob.objects.get(case=self.case, model_version=self.dr)
        self.assertEqual([j.pk for j in services._claim(str(self.job.pk), "t", 1)], [self.job.pk])
        case_set_status(actor=self.w.coord1, case=self.case, status="open", reason="one more look")
        self.job.refresh_from_db()

    def complete_again(self) -> None:
        case_set_status(actor=self.w.coord1, case=self.case, status="complete", reason="the files are fine")

    def finish_job(self) -> None:
        self.assertTrue(services._finish(self.job, "t", []))

    def fail_job(self) -> None:
        services._fail(self.job, "t", "RuntimeError: CUDA error")

    def check(self, status: str, actions: list[str]) -> None:
        self.assertEqual(InferenceJob.objects.get(pk=self.job.pk).status, status)
        self.assertEqual(
            list(
                AuditEvent.objects.filter(object_id=str(self.job.pk)).order_by("seq").values_list("action", flat=True)
            ),
            actions,
        )
        self.assertEqual(InferenceJob.objects.filter(case=self.case).count(), 2)  # nothing queued twice
        report = audit_verify()
        self.assertTrue(report.ok, report.problem)

    def test_a_job_finishing_while_its_case_is_completed_again(self):
        # The worker holds the job (and, now, the chain's lock) when the completion reaches it.
        errors = paused_race("diagnosis.services._save_job", self.finish_job, self.complete_again)
        self.assertEqual(errors, [])
        self.check("succeeded", ["inference_job.queue", "inference_job.succeed"])

    def test_the_case_completed_again_while_its_job_finishes(self):
        # The completion holds the chain's lock when the worker locks the job.
        errors = paused_race("diagnosis.services.input_digests", self.complete_again, self.finish_job)
        self.assertEqual(errors, [])
        self.check("succeeded", ["inference_job.queue", "inference_job.succeed"])

    def test_a_job_failing_while_its_case_is_completed_again(self):
        errors = paused_race("diagnosis.services._save_job", self.fail_job, self.complete_again)
        self.assertEqual(errors, [])
        # The failure committed first: the completion queued the job again.
        self.check("queued", ["inference_job.queue", "inference_job.fail", "inference_job.retry"])

    def test_a_claim_that_fails_a_spent_job_while_its_case_is_completed_again(self):
        # The worker died during each attempt: its message, delivered again, fails the job instead of running it.
        InferenceJob.objects.filter(pk=self.job.pk).update(
            attempts=INFERENCE_MAX_ATTEMPTS, lease_until=timezone.now() - timedelta(seconds=1)
        )

        def claim() -> None:
            self.assertEqual(services._claim(str(self.job.pk), "t", 1), [])

        errors = paused_race("diagnosis.services._save_job", claim, self.complete_again)
        self.assertEqual(errors, [])
        self.check("queued", ["inference_job.queue", "inference_job.fail", "inference_job.retry"])


class ClaimDoesNotWaitForTheChainTests(RaceFixture):
    """A worker's claim of a queued job records no event: it takes no audit chain lock, so claims (one per task
    message) do not queue behind the audited changes of the whole platform."""

    def setUp(self):
        super().setUp()
        case_set_status(actor=self.w.coord1, case=self.case, status="complete")

    def test_a_claim_while_an_audited_change_holds_the_chain(self):
        job = InferenceJob.objects.get(case=self.case, model_version=self.dr)
        # A lock timeout in the claim if it waits for the chain's lock.
        claimed, errors = while_held(audit_chain_lock, lambda: services._claim(str(job.pk), "t", 1))
        self.assertEqual([j.pk for j in claimed], [job.pk])
        self.assertEqual(errors, [])


class CardUpdateWhileACaseIsCompletedTests(RaceFixture):
    def test_a_model_card_updated_while_a_case_queues_a_job_of_the_model(self):
        def complete() -> None:
            case_set_status(actor=self.w.coord1, case=self.case, status="complete")

        def update_card() -> None:
            model_card_update(actor=None, model=self.dr, changes={"later_figures": {"auc": 0.7}}, reason="measured")

        # The completion holds the chain's lock when the card update locks the model version.
        errors = paused_race("diagnosis.services.input_digests", complete, update_card)
        self.assertEqual(errors, [])
        self.assertTrue(InferenceJob.objects.filter(case=self.case, model_version=self.dr).exists())
        self.dr.refresh_from_db()
        self.assertEqual(self.dr.model_card["later_figures"], {"auc": 0.7})
        report = audit_verify()
        self.assertTrue(report.ok, report.problem)
