"""Writes on stored visual fields: re-judging their reliability when a trial's cut-offs change."""

from __future__ import annotations

from django.db import transaction

from platform_core.accounts.models import User
from platform_core.audit.services import audit_record
from trials.file_services import trial_reliability_criteria
from trials.models import Trial, VisualFieldResult
from trials.uploads.visual_field import reliability_from_rates


@transaction.atomic
def visual_field_rejudge(*, actor: User, trial: Trial, reason: str) -> int:
    """Judge every stored visual field of ``trial`` again with its current cut-offs; returns how many verdicts
    changed. Each result records the cut-offs it now carries; each change of verdict is an audit event
    (``visual_field.rejudge``) with the reason, and the whole re-judging one more (``trial.visual_fields_rejudge``).
    Called by ``trial_update`` when the cut-offs change, in its transaction, so that the cut-offs and the verdicts
    never disagree."""
    criteria = trial_reliability_criteria(trial)
    changed = judged = 0
    results = (
        VisualFieldResult.objects.select_for_update(no_key=True, of=("self",))
        .filter(case__subject__trial=trial)
        .select_related("case__subject__site__hospital")
        .order_by("created_at", "pk")
    )
    for result in results:
        judged += 1
        verdict = reliability_from_rates(
            fixation_loss_percent=result.fixation_loss_percent,
            false_positive_percent=result.false_positive_percent,
            false_negative_percent=result.false_negative_percent,
            criteria=criteria,
        )
        before = {"reliable": result.reliable, "reasons": list(result.reliability_reasons)}
        result.reliable = verdict.reliable
        result.reliability_rule = criteria.name[:60]
        result.reliability_reasons = list(verdict.fired)
        result.reliability_criteria = criteria.as_dict()
        result.full_clean()
        result.save(
            update_fields=[
                "reliable",
                "reliability_rule",
                "reliability_reasons",
                "reliability_criteria",
                "updated_at",
            ]
        )
        if before["reliable"] != verdict.reliable or before["reasons"] != list(verdict.fired):
            changed += 1
            audit_record(
                actor=actor,
                action="visual_field.rejudge",
                obj=result,
                trial_ref=trial.slug,
                hospital_code=result.case.subject.site.hospital.code,
                changes={
                    "reliable": [before["reliable"], verdict.reliable],
                    "reliability_reasons": [before["reasons"], list(verdict.fired)],
                    "reliability_criteria": [None, criteria.as_dict()],
                },
                reason=reason,
            )
    # One event for the whole re-judging: every stored field now carries the new cut-offs, changed verdict or not.
    audit_record(
        actor=actor,
        action="trial.visual_fields_rejudge",
        obj=trial,
        trial_ref=trial.slug,
        changes={
            "fields_judged": [None, judged],
            "verdicts_changed": [None, changed],
            "reliability_criteria": [None, criteria.as_dict()],
        },
        reason=reason,
    )
    return changed
