"""The demo networks' cross-validation on the worker, off `make run`'s critical path.

`seed_demo` registers each demo network with its real held-out figures and, on its card, `cross_validation`
{"status": "queued", "folds": K, "recipe": ...} and no cross-validated figure. After the demo trial is seeded
(so that the demo cases' inference jobs are queued first) it sends one task per network for fold 0 on the
worker's `gpu` queue. Each task trains and scores one fold (demo.crossval) and sends the next fold's task with
the out-of-fold scores so far, behind whatever was queued meanwhile: a newcomer's inference job waits for the
fold running and at most one queued fold per network, never for a whole cross-validation. The last fold writes
the pooled figures (`metrics_real_cross_validated`) and `status: "done"` into the card through the registry's
audited `model_card_update`. The card never holds a cross-validated figure that was not measured: until then
it says queued or running, and a failure says so (`status: "failed"` with the error).

Tasks are acknowledged late, so a fold whose worker dies (out of memory, killed) is delivered again, and Celery's
`max_retries` does not count that. The card counts it instead: each fold's start is written into its state
(`fold`, `attempts` per fold, `progress_at`) before it trains, and a fold started more than
`MAX_FOLD_ATTEMPTS` times is marked failed with the reason and not run again (the chain stops, and the
worker's `gpu` queue is free for inference). The end of each fold is written before its next fold is sent, so a
redelivered message of a fold already measured, or of another chain, is skipped. `seed_demo` sends the tasks
again for a card left queued or failed (a worker stopped mid-way loses its message on the embedded broker), or
running with no progress for longer than the task's time limit (no fold can still be running); it resets the
card to queued first, which gives the folds their attempts again. A card running with recent progress is not
sent again (a second chain), and a card already done is never recomputed.

A running card can have no message behind it, though: the embedded filesystem broker loses a message its worker
fetched when that worker stops mid-way, and a worker that dies after writing a fold's end (`fold` + 1) but before
sending the next fold's message leaves none either (its redelivered fold is then skipped as "not next"). Such a
chain would wait until the card is stale (the task's time limit, 31 minutes). `seed_demo --resume-running`
therefore treats every running card as stale, resetting it to queued and sending fold 0 again; `make run`
(deploy/run-embedded.sh) passes it because it runs `seed_demo` before starting its only worker, when no fold
can be running. A message of the old chain still in the broker is skipped as "not next", as a stray one is.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from demo import crossval
from demo.training import CROSS_VALIDATED, CROSS_VALIDATION, CrossValidationRecipe, release_generated_photographs
from diagnosis.models import ModelVersion
from diagnosis.registry import model_card_update

logger = logging.getLogger(__name__)

STATE, RESULT = CROSS_VALIDATION, CROSS_VALIDATED  # the card entries: where it stands, the pooled figures
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
UNFINISHED = (QUEUED, RUNNING, FAILED)
# How many times one fold may start: a fold started once more (its worker died each time, e.g. out of memory)
# is marked failed instead of running again.
MAX_FOLD_ATTEMPTS = 2


def state_of(model: ModelVersion) -> dict[str, Any]:
    state = (model.model_card or {}).get(STATE)
    return state if isinstance(state, dict) else {}


def fold_time_limit() -> timedelta:
    """The longest a fold task can run (its hard time limit): a running card with no progress for longer has no
    fold running."""
    from demo.tasks import demo_cross_validation_fold_task

    return timedelta(seconds=demo_cross_validation_fold_task.time_limit)


def stale(state: dict[str, Any], now: datetime | None = None) -> bool:
    """Whether a running cross-validation made no progress (a fold started or finished) for longer than a fold
    can run."""
    last = state.get("progress_at") or state.get("started_at")
    try:
        when = datetime.fromisoformat(last) if isinstance(last, str) else None
    except ValueError:
        when = None
    if when is None or timezone.is_naive(when):
        return True  # a running state with no readable progress: nothing can prove a fold is running
    return (now or timezone.now()) - when > fold_time_limit()


def unfinished(names: Iterable[str], *, resume_running: bool = False) -> list[ModelVersion]:
    """The registered versions of `names` whose cross-validation is to be sent (again): queued, failed, or
    running but stale (`stale`). A running one with recent progress is left to the chain running it, unless
    `resume_running` says that no worker runs now (the caller starts the only one afterwards): then every running
    one is sent again."""
    now = timezone.now()
    waiting = []
    for model in ModelVersion.objects.filter(name__in=list(names)):
        state = state_of(model)
        status = state.get("status")
        if status in (QUEUED, FAILED) or (status == RUNNING and (resume_running or stale(state, now))):
            waiting.append(model)
    return waiting


def cross_validation_dispatch(models: Sequence[ModelVersion]) -> int:
    """Send fold 0 of each model's cross-validation to the worker; returns how many were sent. A broker that
    cannot be reached fails nothing: the cards stay queued and the next `seed_demo` sends them again."""
    from demo.tasks import demo_cross_validation_fold_task

    sent = 0
    for model in models:
        _requeue(model)
        try:
            demo_cross_validation_fold_task.apply_async(args=[str(model.pk), 0, None, 0.0], queue="gpu")
        except Exception as exc:  # the broker: the card stays queued, which is what it says
            logger.error(
                "Could not send the cross-validation of %s to the worker (%s: %s)", model, type(exc).__name__, exc
            )
            break
        sent += 1
    return sent


def _set_state(
    model: ModelVersion, state: dict[str, Any], *, result: dict[str, float] | None = None, reason: str = ""
) -> ModelVersion:
    changes: dict[str, Any] = {STATE: state}
    if result is not None:
        changes[RESULT] = result
    reason = (
        reason
        or {
            QUEUED: "seed_demo sent the demo network's cross-validation to the worker again",
            RUNNING: "the worker started the demo network's cross-validation on the shipped real data",
            DONE: "the worker finished the demo network's cross-validation: its pooled out-of-fold figures",
            FAILED: "the demo network's cross-validation failed",
        }[state["status"]]
    )
    return model_card_update(actor=None, model=model, changes=changes, reason=reason)


def _requeue(model: ModelVersion) -> None:
    """Put a failed, stale or resumed running card back to queued, with no attempt counted, before its fold 0 is
    sent again."""
    state = state_of(model)
    if state.get("status") == QUEUED and not state.get("attempts"):
        return
    fresh = {key: value for key, value in state.items() if key in ("folds", "recipe")}
    _set_state(model, {**fresh, "status": QUEUED, "queued_at": timezone.now().isoformat()})


def _start_fold(model_pk: str, fold: int) -> tuple[ModelVersion | None, dict[str, Any], dict[str, str] | None]:
    """Count this start of fold `fold` on the card (under a row lock) before it trains; returns the model, its
    state, and None when the fold runs, else the outcome ({"skipped": why} or {"failed": why}). Runs fold 0 of
    a queued card, or the fold a running card is at (the next fold, or this one again: a redelivered message
    whose worker died during it); any other message is a duplicate or stray one. A fold started more than
    MAX_FOLD_ATTEMPTS times is marked failed here and not run."""
    with transaction.atomic():
        # NO KEY UPDATE, as model_card_update (which _set_state calls) locks it: a job or prediction of this version
        # inserted meanwhile by a holder of the audit chain's lock checks its foreign key to it at commit.
        model = ModelVersion.objects.select_for_update(no_key=True).filter(pk=model_pk).first()
        if model is None:
            return None, {}, {"skipped": "no such model version"}
        state = state_of(model)
        status = state.get("status")
        at = state.get("fold")
        if status == QUEUED and fold == 0:
            attempts: dict[str, int] = {}
        elif status == RUNNING and at == fold:
            attempts = dict(state.get("attempts") or {})
        elif status in (QUEUED, RUNNING):
            return (
                model,
                state,
                {"skipped": f"fold {fold + 1} is not next (the card is {status} at fold {(at or 0) + 1})"},
            )
        else:
            return model, state, {"skipped": f"cross-validation {status or 'not asked for'}"}
        now = timezone.now().isoformat()
        count = int(attempts.get(str(fold), 0)) + 1
        attempts[str(fold)] = count
        if count > MAX_FOLD_ATTEMPTS:
            error = (
                f"fold {fold + 1}: started {count - 1} times and never finished (the worker stopped during it, e.g. "
                "out of memory or killed); not run again"
            )
            failed = {**state, "status": FAILED, "attempts": attempts, "progress_at": now, "error": error}
            model = _set_state(model, failed)
            logger.error("Cross-validation of %s: %s", model, error)
            return model, failed, {"failed": error}
        state = {**state, "status": RUNNING, "fold": fold, "attempts": attempts, "progress_at": now, "error": ""}
        if fold == 0 and count == 1:
            state["started_at"] = now
        reason = (
            f"the worker started fold {fold + 1} of the demo network's cross-validation on the shipped real data"
            + (f" (attempt {count}: the last one stopped)" if count > 1 else "")
        )
        return _set_state(model, state, reason=reason), state, None


def cross_validation_fold_run(
    model_pk: str, fold: int, scores: Sequence[float | None] | None, seconds: float = 0.0
) -> dict[str, Any]:
    """Train and score fold `fold` of the model's cross-validation (`scores`: the earlier folds' out-of-fold
    scores, `seconds`: their time); returns what comes next: {"next": (fold, scores, seconds)}, {"done":
    figures}, {"skipped": why} (a duplicate, stray or finished one) or {"failed": why} (started too often).
    Called by the task (one fold per task) and by `cross_validation_run` (all folds here)."""
    model, state, refused = _start_fold(model_pk, fold)
    if model is None or refused is not None:
        return refused or {"skipped": "no such model version"}
    try:
        recipe = CrossValidationRecipe.from_dict(state.get("recipe"))
        if recipe.architecture != model.architecture:
            raise ValueError(f"the recipe trains {recipe.architecture}, the model is {model.architecture}")
        folds = int(state.get("folds") or 0)
        if not 0 <= fold < folds:
            raise ValueError(f"fold {fold} of {folds}")
        started = time.perf_counter()
        everything, index = crossval.cross_validation_folds(
            recipe.architecture, recipe.config(), folds=folds, seed=recipe.seed
        )
        pooled: list[float | None] = list(scores) if scores is not None else [None] * len(everything.truth)
        if len(pooled) != len(everything.truth):
            raise ValueError(f"{len(pooled)} scores for {len(everything.truth)} real items")
        held = index[fold]
        for i, score in zip(held, crossval.fold_scores(everything, held, recipe.train_fold, fold), strict=True):
            pooled[i] = float(score)
        seconds = round(seconds + time.perf_counter() - started, 1)
        if fold + 1 < folds:
            # Written before the next fold is sent: a redelivery of this fold's message is then a duplicate.
            state = {**state, "fold": fold + 1, "progress_at": timezone.now().isoformat()}
            _set_state(
                model, state, reason=f"the worker finished fold {fold + 1} of the demo network's cross-validation"
            )
            return {"next": (fold + 1, pooled, seconds)}
        missing = [i for i, score in enumerate(pooled) if score is None or not math.isfinite(score)]
        if missing:
            raise ValueError(f"{len(missing)} real items have no out-of-fold score (first {missing[0]})")
        figures = crossval.pooled_metrics(everything, [float(s) for s in pooled if s is not None], folds=folds)
        done = {
            **state,
            "status": DONE,
            "progress_at": timezone.now().isoformat(),
            "finished_at": timezone.now().isoformat(),
            "seconds": seconds,
        }
        _set_state(model, done, result=figures)
        release_generated_photographs()
        return {"done": figures}
    except Exception as exc:
        release_generated_photographs()
        failed = {**state, "status": FAILED, "error": f"fold {fold + 1}: {type(exc).__name__}: {exc}"[:500]}
        _set_state(ModelVersion.objects.get(pk=model_pk), failed)
        raise


def cross_validation_run(model: ModelVersion) -> dict[str, Any]:
    """Every fold here, in this process (tests; `seed_demo --cross-validate-here`)."""
    outcome = cross_validation_fold_run(str(model.pk), 0, None)
    while "next" in outcome:
        outcome = cross_validation_fold_run(str(model.pk), *outcome["next"])
    return outcome
