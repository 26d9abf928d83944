"""Inference jobs: queued when a case is complete, run in batches by GPU workers, idempotent.

Contract (tasks are acked late, so a message can be delivered twice, or again after a worker died):
- one job per (case, model version), created once;
- a job that succeeded or failed is never run again;
- a running job belongs to the task message that claimed it (``claimed_by``) until its lease ends; the
  same message redelivered takes it back (its previous worker died), another message leaves it alone;
- a job reads every file of its model's modality that ``diagnosis.selectors.model_input_files`` picks (each
  photograph of the case; the newest visual field) and writes one prediction per file, all in the same
  transaction that marks the job succeeded, at most once. If any file cannot be read the job fails naming
  it: a case result that silently skipped a photograph could miss the worst one.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone
from PIL import Image

from diagnosis.models import (
    INFERENCE_MAX_ATTEMPTS,
    InferenceJob,
    JobStatus,
    ModelStatus,
    ModelVersion,
    Prediction,
    ResultKind,
)
from diagnosis.networks.specs import FUNDUS, ResultContext
from diagnosis.selectors import case_photographs, model_input_files
from platform_core.audit.services import audit_chain_lock, audit_snapshot, audited_save
from platform_core.storage import delete_quietly, save_private, stored_name
from trials.models import Case, CaseFile, VisualFieldResult

logger = logging.getLogger(__name__)


def input_digests(case: Case) -> dict[str, str]:
    """Per modality, a SHA-256 over the files of that modality that a model would read
    (``diagnosis.selectors.model_input_files``)."""
    hashes: dict[str, list[str]] = {}
    for modality, sha256 in model_input_files(case).values_list("modality", "sha256"):
        hashes.setdefault(modality, []).append(sha256)
    return {
        modality: hashlib.sha256("\n".join(sorted(values)).encode()).hexdigest() for modality, values in hashes.items()
    }


def _save_job(
    job: InferenceJob,
    case: Case,
    action: str,
    *,
    before: dict[str, Any] | None,
    update_fields: list[str] | None = None,
    reason: str = "",
    extra_changes: dict[str, list[Any]] | None = None,
) -> None:
    """Save a job and record its event (the worker acts for the platform: no actor)."""
    audited_save(
        job,
        actor=None,
        action=action,
        before=before,
        update_fields=update_fields,
        trial_ref=case.subject.trial.slug,
        hospital_code=case.subject.site.hospital.code,
        reason=reason,
        extra_changes=extra_changes,
    )


# Publishing gives up after about a second when the broker is down (Celery's default retries for longer): the
# request that completed the case is waiting, and the job is not lost (see inference_jobs_dispatch).
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.3, "interval_max": 0.5}


def inference_jobs_dispatch(job_pks: list[str], countdown: float = 0) -> int:
    """Publish the task message of each job and mark it dispatched (``dispatched_at``); returns how many were sent.
    With a ``countdown`` the worker takes the messages that many seconds later (a job put back after an error).

    The transactional outbox's second half: the jobs were written in the transaction that completed the case, and
    this runs after its commit. A broker that cannot be reached fails nothing: the case stays complete, the jobs
    stay queued and undispatched (one error line in the log says so) and ``inference_redispatch`` sends them once
    the broker is back. A job sent twice still runs once (``_claim``).
    """
    from diagnosis.tasks import infer_case_task

    sent = 0
    for n, job_pk in enumerate(job_pks):
        try:
            infer_case_task.apply_async(
                args=[job_pk], queue="gpu", retry_policy=PUBLISH_RETRY, countdown=countdown or None
            )
        except Exception as exc:  # after the commit nothing may fail the request: the job waits for the re-dispatch
            logger.error(
                "Broker unreachable (%s: %s): %d inference job(s) stay queued, not dispatched (first %s); "
                "inference_redispatch sends them when the broker is back",
                type(exc).__name__,
                exc,
                len(job_pks) - n,
                job_pk,
            )
            break
        sent += 1
        try:
            InferenceJob.objects.filter(pk=job_pk).update(dispatched_at=timezone.now())
        except DatabaseError:  # sent but unmarked: the re-dispatch may send it again, which is harmless
            logger.warning("Inference job %s was sent but could not be marked dispatched", job_pk)
    return sent


def inference_redispatch(*, unsent_for: timedelta | None = None, sent_for: timedelta | None = None) -> int:
    """Send a message for every queued job that lacks one: never dispatched for ``unsent_for`` (the broker was down
    after its commit; default ``VISUS_INFERENCE_REDISPATCH_UNSENT_SECONDS``), or dispatched ``sent_for`` ago and still
    queued (its message may be lost with a broker that restarted; default ``VISUS_INFERENCE_RESEND_SECONDS``).

    Run by Celery beat (``CELERY_BEAT_SCHEDULE``) and safe at any time: a job runs at most once however many
    messages it gets. Returns how many messages were sent.
    """
    now = timezone.now()
    unsent_for = (
        unsent_for if unsent_for is not None else timedelta(seconds=settings.VISUS_INFERENCE_REDISPATCH_UNSENT_SECONDS)
    )
    sent_for = sent_for if sent_for is not None else timedelta(seconds=settings.VISUS_INFERENCE_RESEND_SECONDS)
    due = (
        InferenceJob.objects.filter(status=JobStatus.QUEUED)
        .filter(Q(dispatched_at__isnull=True, updated_at__lte=now - unsent_for) | Q(dispatched_at__lte=now - sent_for))
        .order_by("created_at")
        .values_list("pk", flat=True)
    )
    job_pks = [str(pk) for pk in due]
    if not job_pks:
        return 0
    sent = inference_jobs_dispatch(job_pks)
    logger.info("Re-dispatched %d of %d queued inference job(s) that had no task message", sent, len(job_pks))
    return sent


@transaction.atomic
def inference_jobs_queue(*, case: Case) -> list[InferenceJob]:
    """One job per active model that fits the case's files, sent to the ``gpu`` queue after commit (a transactional
    outbox: the rows are the record, ``inference_jobs_dispatch`` publishes after the commit, and
    ``inference_redispatch`` sends what the broker did not take).

    A job is tied to the files it reads (``input_digest``). Completing the case again with the same files
    queues nothing new, except that a failed job is queued again; with changed files each model gets a new
    job, and the earlier job and its prediction stay in the record but are no longer current.
    """
    digests = input_digests(case)
    to_send: list[InferenceJob] = []
    for model in ModelVersion.objects.filter(status=ModelStatus.ACTIVE).order_by("name", "version"):
        digest = digests.get(model.modality)
        if digest is None:
            continue
        job = (
            InferenceJob.objects.select_for_update(no_key=True)
            .filter(case=case, model_version=model, input_digest=digest)
            .first()
        )
        if job is None:
            for older in InferenceJob.objects.filter(case=case, model_version=model, is_current=True):
                before = audit_snapshot(older)
                older.is_current = False
                _save_job(
                    older,
                    case,
                    "inference_job.supersede",
                    before=before,
                    update_fields=["is_current", "updated_at"],
                    reason="the case's files changed",
                )
            job = InferenceJob(case=case, model_version=model, input_digest=digest)
            _save_job(job, case, "inference_job.queue", before=None, extra_changes={"model": [None, str(model)]})
            to_send.append(job)
        elif job.status == JobStatus.QUEUED:
            to_send.append(job)  # its message may be lost; a second one is harmless (claims are idempotent)
        elif job.status == JobStatus.FAILED or (
            job.status == JobStatus.RUNNING and job.lease_until is not None and job.lease_until <= timezone.now()
        ):
            # Failed, or running under a lease nobody renewed (its task died past the time limit).
            before, old_error = audit_snapshot(job), job.error or f"left {job.status} when its task stopped"
            job.status, job.error, job.progress, job.attempts = JobStatus.QUEUED, "", 0, 0
            job.claimed_by, job.lease_until, job.finished_at = "", None, None
            job.dispatched_at = None  # a new message is due (the re-dispatch sends it if the broker is down now)
            _save_job(
                job,
                case,
                "inference_job.retry",
                before=before,
                update_fields=[
                    "status",
                    "error",
                    "progress",
                    "attempts",
                    "claimed_by",
                    "lease_until",
                    "finished_at",
                    "dispatched_at",
                    "updated_at",
                ],
                reason=f"earlier attempt: {old_error}"[:500],
            )
            to_send.append(job)
    if to_send:
        transaction.on_commit(partial(inference_jobs_dispatch, [str(job.pk) for job in to_send]))
    return to_send


@dataclass
class _Item:
    """One file a job reads, ready for the network (or why it cannot be)."""

    case_file: CaseFile
    label: str  # "photograph 2 of 3", for the job's error
    visual_field: VisualFieldResult | None = None
    item: Any = None
    error: str = ""
    unreliable: VisualFieldResult | None = None
    image_size: tuple[int, int] | None = None
    preview: Image.Image | None = None


@dataclass
class _Work:
    job: InferenceJob
    items: list[_Item] = field(default_factory=list)
    error: str = ""  # the job cannot run at all (say, no file of its modality)


def _lease() -> timedelta:
    return timedelta(seconds=settings.VISUS_INFERENCE_LEASE_SECONDS)


class AttemptsExhausted(RuntimeError):
    """The claimed jobs had their ``INFERENCE_MAX_ATTEMPTS`` and are failed: the task must not retry (not transient)."""


def _attempts(job: InferenceJob) -> str:
    return f"{job.attempts} attempt{'' if job.attempts == 1 else 's'}"


# A batch-mate put back after a transient error waits before its next claim, as the task's own retry does
# (project_task's retry_backoff and retry_backoff_max): 2 s after its first attempt, then 4, 8, ... at most 300.
MATE_BACKOFF_SECONDS = 2
MATE_BACKOFF_MAX_SECONDS = 300


def _mate_backoff(attempts: int) -> int:
    return min(MATE_BACKOFF_SECONDS << max(attempts - 1, 0), MATE_BACKOFF_MAX_SECONDS)  # 2, 4, 8, ..., 300


def _release_held(task_id: str, job_pk: str) -> None:
    """Put back the other jobs this message still holds (its earlier delivery batched them, then its worker died)
    and send each its own message: each runs alone now, as a job with an attempt counted does.

    Only batch-mates whose lease has ended are put back. A broker may deliver the message again while its first
    worker is still alive and running the batch: its mates, still under their lease, are left to it (running them
    twice would cost GPU time, their results being kept only for the claim that holds them). Each such mate is
    sent a message of its own for when its lease ends, which takes it then only if its holder did not finish it:
    a mate of a worker that did die is not left running.
    """
    now = timezone.now()
    held = list(
        InferenceJob.objects.select_for_update(skip_locked=True, no_key=True)
        .filter(status=JobStatus.RUNNING, claimed_by=task_id)
        .exclude(pk=job_pk)
        .values_list("pk", "lease_until")
    )
    ended = [str(pk) for pk, lease_until in held if lease_until is None or lease_until < now]
    live = [(str(pk), lease_until) for pk, lease_until in held if lease_until is not None and lease_until >= now]
    for pk, lease_until in live:
        due = (lease_until - now).total_seconds() + 1  # a second later, so that a clock running ahead finds it held
        transaction.on_commit(partial(inference_jobs_dispatch, [pk], countdown=due))
    if live:
        logger.warning(
            "Message %s was delivered again while %d batch-mate(s) of its job are under their lease: they are left "
            "to their holder, each with a message for when its lease ends",
            task_id,
            len(live),
        )
    if not ended:
        return
    InferenceJob.objects.filter(pk__in=ended).update(
        status=JobStatus.QUEUED, claimed_by="", lease_until=None, progress=0, updated_at=now
    )
    logger.warning("Message %s was delivered again: %d batch-mate(s) of its job run alone", task_id, len(ended))
    transaction.on_commit(partial(inference_jobs_dispatch, ended))


class _ChainLockFirst(Exception):
    """A claim found a job to fail (an audited change) before it held the audit chain's lock: it starts again."""


RETIRED_BEFORE_RUN = "the model was retired before the job ran"


def _claim_verdict(job: InferenceJob | None, task_id: str, now: datetime) -> str | None:
    """What a claim does with the job it locked: None takes it, "" leaves it, any other text fails it with that
    error."""
    if job is None or job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        return ""
    if job.status == JobStatus.QUEUED and job.lease_until is not None and job.lease_until > now:
        return ""  # a batch-mate put back after a transient error: its delayed message takes it
    if job.model_version.status != ModelStatus.ACTIVE and job.status == JobStatus.QUEUED:
        return RETIRED_BEFORE_RUN
    if (
        job.status == JobStatus.RUNNING
        and job.claimed_by != task_id
        and job.lease_until is not None
        and job.lease_until > now
    ):
        return ""  # another live task holds it and will finish it
    if job.attempts >= INFERENCE_MAX_ATTEMPTS:
        return f"gave up after {_attempts(job)}: the last stopped without a result (its worker died?)"
    return None


def _claim(job_pk: str, task_id: str, batch_size: int) -> list[InferenceJob]:
    """Lock the job; take it (and up to batch_size-1 queued jobs of the same model) for this task. A job that had
    its ``INFERENCE_MAX_ATTEMPTS`` already (its last claims ended without a result: the worker died) fails instead.

    Only jobs never claimed are batched: a job with an attempt counted (its batch failed transiently, or its
    worker died) runs alone, and batch-mates are taken only with no attempt counted. A job that keeps killing its
    worker thus costs a healthy job batched with it one attempt at most, never its failure; the batch-mates a
    redelivered message held are put back once their lease has ended, each with a message of its own
    (``_release_held``).

    Taking a job records no event, so a claim takes no audit chain lock: claims (one per task message) do not wait
    for the audited changes of the whole platform. Failing the job does record one, and every change to a job that
    records an event takes the chain's lock before the job's row (``_finish``, ``_fail``; a case completed again
    holds the chain's lock when ``inference_jobs_queue`` locks its jobs): with the row first, a claim waiting for
    the chain's lock and a completion waiting for the row deadlocked. So a claim that finds its job to fail rolls
    back and starts again holding the chain's lock first (rare: a retired model, attempts spent).
    """
    try:
        return _claim_once(job_pk, task_id, batch_size, chain_locked=False)
    except _ChainLockFirst:
        return _claim_once(job_pk, task_id, batch_size, chain_locked=True)


def _claim_once(job_pk: str, task_id: str, batch_size: int, *, chain_locked: bool) -> list[InferenceJob]:
    now = timezone.now()
    with transaction.atomic():
        if chain_locked:
            audit_chain_lock()
        related = ("model_version", "case__subject__trial", "case__subject__site__hospital")
        job = (
            InferenceJob.objects.select_for_update(no_key=True, of=("self",))
            .select_related(*related)
            .filter(pk=job_pk)
            .first()
        )
        verdict = _claim_verdict(job, task_id, now)
        if verdict and not chain_locked:
            raise _ChainLockFirst  # before anything is written or logged: it all runs again
        _release_held(task_id, job_pk)
        if job is None or verdict is not None:
            if job is not None and verdict:
                _claim_fails(job, verdict, now)
            return []
        others = []
        if job.attempts == 0:
            others = list(
                InferenceJob.objects.select_for_update(skip_locked=True, no_key=True, of=("self",))
                .select_related(*related)
                .filter(status=JobStatus.QUEUED, model_version=job.model_version, attempts=0)
                .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
                .exclude(pk=job.pk)
                .order_by("created_at")[: max(batch_size - 1, 0)]
            )
        claimed = [job, *others]
        worker = f"{socket.gethostname()}:{os.getpid()}"
        for item in claimed:
            item.status = JobStatus.RUNNING
            item.claimed_by = task_id
            item.lease_until = now + _lease()
            item.started_at = now
            item.attempts += 1
            item.progress = 10
            item.worker = worker
            item.error = ""
            item.save(
                update_fields=[
                    "status",
                    "claimed_by",
                    "lease_until",
                    "started_at",
                    "attempts",
                    "progress",
                    "worker",
                    "error",
                    "updated_at",
                ]
            )
    return claimed


def _claim_fails(job: InferenceJob, error: str, now: datetime) -> None:
    """The claim fails the job instead of taking it: its model was retired, or it had its attempts."""
    before = audit_snapshot(job)
    job.status, job.error, job.finished_at = JobStatus.FAILED, error, now
    if error == RETIRED_BEFORE_RUN:
        update_fields = ["status", "error", "finished_at", "updated_at"]
    else:  # its attempts are spent: no task holds it any more
        job.claimed_by, job.lease_until = "", None
        update_fields = ["status", "error", "finished_at", "claimed_by", "lease_until", "updated_at"]
    _save_job(job, job.case, "inference_job.fail", before=before, update_fields=update_fields, reason=error)
    if error != RETIRED_BEFORE_RUN:
        logger.warning("Inference job %s failed: gave up after %d attempts", job.pk, job.attempts)


def _progress(jobs: list[InferenceJob], percent: int) -> None:
    InferenceJob.objects.filter(pk__in=[j.pk for j in jobs], status=JobStatus.RUNNING).update(progress=percent)


def _fundus_image(case_file: CaseFile) -> Image.Image:
    from trials.uploads.deidentify_dicom import frame_image

    with default_storage.open(stored_name(case_file.content), "rb") as handle:
        data = handle.read()
    if case_file.file_format == "dicom":
        return frame_image(data, max_pixels=settings.VISUS_MAX_IMAGE_PIXELS).convert("RGB")
    return Image.open(io.BytesIO(data)).convert("RGB")


def _prepare_photograph(entry: _Item) -> None:
    image = _fundus_image(entry.case_file)
    entry.image_size = image.size
    preview = image.copy()
    preview.thumbnail((512, 512))
    entry.preview = preview
    entry.item = image


def _prepare_visual_field(entry: _Item, result: VisualFieldResult) -> None:
    from diagnosis.networks.inference import VisualFieldItem

    if not result.reliable:
        entry.unreliable = result
        return
    with default_storage.open(stored_name(result.pd_plot), "rb") as handle:
        plot = Image.open(io.BytesIO(handle.read())).convert("RGB")
    entry.item = VisualFieldItem(
        plot=plot,
        vfi=result.visual_field_index,
        md=result.mean_deviation,
        psd=result.pattern_standard_deviation,
    )


def _prepare(work: _Work) -> None:
    """The job's items: every photograph of the case for a fundus model, the newest visual field otherwise."""
    job = work.job
    try:
        if job.model_version.modality == FUNDUS:
            photographs = list(case_photographs(job.case))
            if not photographs:
                raise ValueError("the case has no gradable fundus photograph (ungradable ones are not read)")
            work.items = [
                _Item(case_file=f, label=f"photograph {n} of {len(photographs)}")
                for n, f in enumerate(photographs, start=1)
            ]
        else:
            result = (
                VisualFieldResult.objects.filter(case_file__in=model_input_files(job.case))
                .select_related("case_file")
                .order_by("-created_at")
                .first()
            )
            if result is None:
                raise ValueError("the case has no visual field")
            work.items = [_Item(case_file=result.case_file, label="visual field", visual_field=result)]
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:  # one bad case fails alone
        work.error = f"{type(exc).__name__}: {exc}"
        return
    for entry in work.items:
        try:
            if entry.visual_field is None:
                _prepare_photograph(entry)
            else:
                _prepare_visual_field(entry, entry.visual_field)
        except SoftTimeLimitExceeded:
            raise  # the whole batch stops (inference_run fails its jobs), not this case alone
        except Exception as exc:  # one bad file fails its job alone
            entry.error = f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class _Result:
    case_file: CaseFile
    fields: dict[str, Any]
    overlay: bytes | None = None


def _finish(job: InferenceJob, task_id: str, results: list[_Result]) -> bool:
    """Write one prediction per file read and mark the job succeeded, once. Returns False if someone else
    finished it."""
    stored = [save_private(f"predictions/{job.case_id}", r.overlay, "png") if r.overlay else "" for r in results]
    recorded = False
    try:
        with transaction.atomic():
            audit_chain_lock()  # before the job's row, as every audited change of a job (see _claim)
            locked = InferenceJob.objects.select_for_update(no_key=True).get(pk=job.pk)
            if locked.status != JobStatus.RUNNING or locked.claimed_by != task_id or locked.predictions.exists():
                return False  # its overlays are deleted below, once the chain's lock is released
            predictions = [
                Prediction.objects.create(
                    job=locked,
                    case_id=job.case_id,
                    case_file=result.case_file,
                    model_version=job.model_version,
                    attention_overlay=name,
                    **result.fields,
                )
                for result, name in zip(results, stored, strict=True)
            ]
            before = audit_snapshot(locked)
            locked.status = JobStatus.SUCCEEDED
            locked.progress = 100
            locked.finished_at = timezone.now()
            _save_job(
                locked,
                job.case,
                "inference_job.succeed",
                before=before,
                update_fields=["status", "progress", "finished_at", "updated_at"],
                extra_changes={"predictions": [None, [str(p.pk) for p in predictions]]},
            )
        recorded = True
    finally:
        if not recorded:  # someone else finished it, or this failed: no overlay without its prediction
            delete_quietly([name for name in stored if name])
    return True


def _fail(job: InferenceJob, task_id: str, reason: str) -> None:
    with transaction.atomic():
        audit_chain_lock()  # before the job's row, as every audited change of a job (see _claim)
        locked = InferenceJob.objects.select_for_update(no_key=True).get(pk=job.pk)
        if locked.status != JobStatus.RUNNING or locked.claimed_by != task_id:
            return
        before = audit_snapshot(locked)
        locked.status = JobStatus.FAILED
        locked.error = reason[:2000]
        locked.finished_at = timezone.now()
        _save_job(
            locked,
            job.case,
            "inference_job.fail",
            before=before,
            update_fields=["status", "error", "finished_at", "updated_at"],
            reason=reason[:500],
        )
    logger.warning("Inference job %s failed: %s", job.pk, reason.split(":")[0])


def inference_run(
    *,
    job_pk: str,
    task_id: str,
    batch_size: int | None = None,
    retryable: tuple[type[BaseException], ...] = (),
    final_attempt: bool = True,
) -> dict[str, int]:
    """Run a job and, in the same batch, other queued jobs of its model. Safe to call again for any job.

    Whatever goes wrong after the claim, no claimed job is left "running":
    - an error of a ``retryable`` type (the task will run again) puts the task's job back in the queue for the
      retry, unless this is the task's ``final_attempt`` or the job's ``INFERENCE_MAX_ATTEMPTS``-th (counted on the
      job, whichever message claimed it): then it fails and, on an earlier attempt, the task gets
      ``AttemptsExhausted`` (not retried) instead of the error. Its batch-mates go back to the queue each with a
      message of its own after a backoff (``_release``), never failed by this task's count;
    - any other error, and the task's soft time limit, fails each unfinished job with the reason; completing
      the case again queues it again (with a fresh count).
    Only the worker's death leaves them running; the redelivered message then takes its own job back, alone (a
    claim too), and puts its batch-mates back with a message each (``_claim``).
    """
    batch_size = batch_size or settings.VISUS_INFERENCE_BATCH_SIZE
    jobs = _claim(job_pk, task_id, batch_size)
    if not jobs:
        return {"ran": 0}
    try:
        return _run_claimed(jobs, task_id, batch_size)
    except Exception as exc:
        if isinstance(exc, retryable):
            lead, mates = jobs[0], jobs[1:]
            spent = final_attempt or lead.attempts >= INFERENCE_MAX_ATTEMPTS
            if spent:
                _fail(lead, task_id, f"gave up after {_attempts(lead)}: {type(exc).__name__}: {exc}")
            else:
                _release([lead], task_id)
            # The task's retry takes its own job back (alone: it has an attempt counted); each batch-mate gets a
            # message of its own, after a backoff, so the other queued messages do not take it back at once.
            _release(mates, task_id, wait=True)
            if spent and not final_attempt:
                raise AttemptsExhausted(f"the job had its {INFERENCE_MAX_ATTEMPTS} attempts") from exc
            raise
        reason = (
            "the worker's time limit ran out"
            if isinstance(exc, SoftTimeLimitExceeded)
            else f"the batch stopped: {type(exc).__name__}: {exc}"
        )
        for job in jobs:
            _fail(job, task_id, reason)  # does nothing for a job already finished
        raise


def _release(jobs: list[InferenceJob], task_id: str, *, wait: bool = False) -> None:
    """Back to the queue (a retry of the same task takes it again); nothing for a job already finished. With
    ``wait`` each job waits its backoff (``lease_until`` on a queued job: no claim before it) and is sent a
    message of its own for then (a second later, so that a clock running ahead does not find it waiting)."""
    for job in jobs:
        delay = _mate_backoff(job.attempts) if wait else 0
        not_before = timezone.now() + timedelta(seconds=delay) if wait else None
        put_back = InferenceJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING, claimed_by=task_id).update(
            status=JobStatus.QUEUED, claimed_by="", lease_until=not_before, progress=0, updated_at=timezone.now()
        )
        if put_back and wait:
            transaction.on_commit(partial(inference_jobs_dispatch, [str(job.pk)], countdown=delay + 1))


def _run_claimed(jobs: list[InferenceJob], task_id: str, batch_size: int) -> dict[str, int]:
    from diagnosis.networks.inference import select_device
    from diagnosis.registry import model_load

    slowdown = settings.VISUS_INFERENCE_SLOWDOWN_SECONDS  # fault-injection knob for tests; 0 in production
    if slowdown:
        time.sleep(slowdown)
    model_version = jobs[0].model_version
    works = [_Work(job) for job in jobs]
    for work in works:
        _prepare(work)
    _progress(jobs, 30)
    counts = {"ran": len(jobs), "succeeded": 0, "failed": 0}
    try:
        device = select_device()
        network = model_load(model_version, device=device)
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:  # every claimed job fails with the reason
        for work in works:
            _fail(work.job, task_id, f"model could not be loaded: {exc}")
        counts["failed"] = len(works)
        return counts

    runnable = [e for w in works if not w.error for e in w.items if not e.error and e.unreliable is None]
    items = [e.item for e in runnable]
    # The time limit stops the whole batch (inference_run fails its jobs); it is not one item's error.
    batching: dict[str, Any] = {"batch_size": batch_size, "device": device, "propagate": (SoftTimeLimitExceeded,)}
    started = time.perf_counter()
    outputs = model_version.spec.predict(network, items, **batching) if items else []
    per_item_ms = (time.perf_counter() - started) * 1000 / max(len(runnable), 1)
    _progress(jobs, 90)
    outputs_of = dict(zip([id(e) for e in runnable], outputs, strict=True))

    for work in works:
        if work.error:
            _fail(work.job, task_id, work.error)
            counts["failed"] += 1
            continue
        try:
            results, errors = _results(work, outputs_of, per_item_ms, str(device))
            if errors:
                # Every file or none: a case result that skipped a photograph could miss the worst one.
                _fail(work.job, task_id, "; ".join(errors))
                counts["failed"] += 1
                continue
            counts["succeeded"] += int(_finish(work.job, task_id, results))
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:  # e.g. storage refused the overlay: this job fails alone
            _fail(work.job, task_id, f"the result could not be stored: {type(exc).__name__}: {exc}")
            counts["failed"] += 1
    return counts


def _results(
    work: _Work, outputs_of: dict[int, Any], per_item_ms: float, device: str
) -> tuple[list[_Result], list[str]]:
    """The prediction of each of the job's files, and the errors of those that could not be read."""
    from diagnosis.networks.inference import ItemError

    spec = work.job.model_version.spec
    results: list[_Result] = []
    errors: list[str] = []
    for entry in work.items:
        if entry.error:
            errors.append(f"{entry.error} (in {entry.label})")
            continue
        if entry.unreliable is not None:
            reasons = "; ".join(entry.unreliable.reliability_reasons) or "outside the trial's cut-offs"
            fields = {"kind": ResultKind.UNRELIABLE_FIELD, "runtime_ms": 0.0, "details": {"reasons": reasons}}
            results.append(_Result(entry.case_file, fields))
            continue
        output = outputs_of[id(entry)]
        if isinstance(output, ItemError):
            errors.append(f"{output.error}: {output.message} (in {entry.label})")
            continue
        record = spec.record(output, ResultContext(per_item_ms, device, entry.image_size, entry.preview))
        results.append(_Result(entry.case_file, record.fields, record.overlay))
    return results, errors
