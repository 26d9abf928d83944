"""The demo networks' cross-validation on the worker, off `make run`'s critical path.

`seed_demo` registers each demo network with its real held-out figures and, on its card, `cross_validation`
{"status": "queued", "folds": K, "recipe": ...} and no cross-validated figure. After the demo trial is seeded
(so that the demo cases' inference jobs are queued first) it sends one task per network for fold 0 on the
worker's `gpu` queue. Each task trains and scores one fold (demo.crossval) and sends the next fold's task with
the out-of-fold scores so far, behind whatever was queued meanwhile: a newcomer's inference job waits for the
fold running and at most one queued fold per network, never for a whole cross-validation. The last fold writes
the pooled figures (`metrics_real_cross_validated`) and `status: "done"` into the card through the registry's
audited `model_card_update`. The card never holds a cross-validated figure that was not measured: until then
it says queued or running, and a failure says so (`status: "failed"` with the error). `seed_demo` sends the
tasks again for a card left queued, running or failed (a worker stopped mid-way loses its message on the
embedded broker); a card already done is never recomputed.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from django.utils import timezone

from demo import crossval
from demo.training import CROSS_VALIDATED, CROSS_VALIDATION, CrossValidationRecipe, release_generated_photographs
from diagnosis.models import ModelVersion
from diagnosis.registry import model_card_update

logger = logging.getLogger(__name__)

STATE, RESULT = CROSS_VALIDATION, CROSS_VALIDATED  # the card entries: where it stands, the pooled figures
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
UNFINISHED = (QUEUED, RUNNING, FAILED)


def state_of(model: ModelVersion) -> dict[str, Any]:
    state = (model.model_card or {}).get(STATE)
    return state if isinstance(state, dict) else {}


def unfinished(names: Iterable[str]) -> list[ModelVersion]:
    """The registered versions of `names` whose cross-validation is queued, running or failed."""
    return [
        model
        for model in ModelVersion.objects.filter(name__in=list(names))
        if state_of(model).get("status") in UNFINISHED
    ]


def cross_validation_dispatch(models: Sequence[ModelVersion]) -> int:
    """Send fold 0 of each model's cross-validation to the worker; returns how many were sent. A broker that
    cannot be reached fails nothing: the cards stay queued and the next `seed_demo` sends them again."""
    from demo.tasks import demo_cross_validation_fold_task

    sent = 0
    for model in models:
        try:
            demo_cross_validation_fold_task.apply_async(args=[str(model.pk), 0, None, 0.0], queue="gpu")
        except Exception as exc:  # the broker: the card stays queued, which is what it says
            logger.error(
                "Could not send the cross-validation of %s to the worker (%s: %s)", model, type(exc).__name__, exc
            )
            break
        sent += 1
    return sent


def _set_state(model: ModelVersion, state: dict[str, Any], *, result: dict[str, float] | None = None) -> ModelVersion:
    changes: dict[str, Any] = {STATE: state}
    if result is not None:
        changes[RESULT] = result
    reason = {
        RUNNING: "the worker started the demo network's cross-validation on the shipped real data",
        DONE: "the worker finished the demo network's cross-validation: its pooled out-of-fold figures",
        FAILED: "the demo network's cross-validation failed",
    }[state["status"]]
    return model_card_update(actor=None, model=model, changes=changes, reason=reason)


def cross_validation_fold_run(
    model_pk: str, fold: int, scores: Sequence[float | None] | None, seconds: float = 0.0
) -> dict[str, Any]:
    """Train and score fold `fold` of the model's cross-validation (`scores`: the earlier folds' out-of-fold
    scores, `seconds`: their time); returns what comes next: {"next": (fold, scores, seconds)}, {"done":
    figures} or {"skipped": why}. Called by the task (one fold per task)
    and by `cross_validation_run` (all folds here)."""
    model = ModelVersion.objects.filter(pk=model_pk).first()
    if model is None:
        return {"skipped": "no such model version"}
    state = state_of(model)
    if state.get("status") not in UNFINISHED:
        return {"skipped": f"cross-validation {state.get('status') or 'not asked for'}"}
    try:
        recipe = CrossValidationRecipe.from_dict(state.get("recipe"))
        if recipe.architecture != model.architecture:
            raise ValueError(f"the recipe trains {recipe.architecture}, the model is {model.architecture}")
        folds = int(state.get("folds") or 0)
        if not 0 <= fold < folds:
            raise ValueError(f"fold {fold} of {folds}")
        if fold == 0:
            state = {**state, "status": RUNNING, "started_at": timezone.now().isoformat(), "error": ""}
            model = _set_state(model, state)
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
            return {"next": (fold + 1, pooled, seconds)}
        missing = [i for i, score in enumerate(pooled) if score is None or not math.isfinite(score)]
        if missing:
            raise ValueError(f"{len(missing)} real items have no out-of-fold score (first {missing[0]})")
        figures = crossval.pooled_metrics(everything, [float(s) for s in pooled if s is not None], folds=folds)
        done = {**state, "status": DONE, "finished_at": timezone.now().isoformat(), "seconds": seconds}
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
