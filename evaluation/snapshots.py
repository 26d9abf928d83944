"""The dashboard's stored analyses (issue 13, item 10): computed once per state of the data, served to everyone
who may see them until the data change.

The fingerprint of a trial's inputs is one SQL statement, hashed with the source of the analysis code, that reads
indexes and small tables only (7 ms in PostgreSQL at 1,000,000 reads, EXPLAIN ANALYZE; 12-20 ms from Django on
the busy bench machine): per reader assignment the reads created
(their numbers run 1, 2, ... in the unique index), the newest change of a signed read (signing and amending save
it) and the drafts' count and newest creation (a draft counts in the reading progress; partial indexes of
evaluation's migration 0001); the count and newest change of the trial, its reading set-up (crossing, aided phase)
and reference lock, reader assignments, sites and their hospitals, and of every calibration case and model
version; and the newest change of any subject, case and reference standard and the newest prediction of any trial
(indexed: a change in another trial refreshes this one's analyses too, never the other way round). Every one of
these rows is written through the ORM's ``save`` (``updated_at`` is auto_now), signed reads, cases, subjects,
reference standards and predictions are never deleted, and a discarded draft changes the drafts' count: so a
change of any input (a read signed or amended, a reference standard recorded or locked, a prediction stored, a
case excluded...) changes the fingerprint. Rows written around the ORM (bulk SQL) are not seen.

The timestamps are those of the saves, not of the commits: a row saved early in a long transaction (or on a host
whose clock is behind) and committed after a snapshot was stored may leave every MAX unchanged. So the fingerprint
also reads the trial's and the global data versions (``evaluation.signals``), bumped after each commit of a write
to any of these tables: a snapshot that did not see a write read a lower version than every fingerprint after its
bump (the remaining assumptions are in that module's docstring).

``dashboard(trial)`` answers with the snapshot whose fingerprint is the current one (computed now when missing and
the trial has at most ``VISUS_DASHBOARD_INLINE_READS`` reads created), else with the last snapshot marked stale
and one refresh queued (``evaluation.tasks.refresh_analysis_task``; at most one in flight per trial: the worker
reads the data as they are when it runs; none for ``VISUS_DASHBOARD_RETRY_SECONDS`` after a failed one, the page
saying so and when it is tried again). The fingerprint and the report are read in one REPEATABLE READ
transaction on PostgreSQL, so a snapshot's fingerprint is that of the very data it was computed from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from diagnosis.models import ModelVersion, Prediction
from evaluation.analysis import trial_analysis
from evaluation.models import AnalysisSnapshot, DataVersion
from evaluation.selectors_analysis import _t, _trial_param
from platform_core.accounts.models import Hospital
from reading.models import CalibrationCase, Read, ReaderAssignment, ReadingSetup
from trials.models import Case, ReferenceStandard, Subject, Trial, TrialSite

logger = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
# The code the figures come from: a deployment that changes it never serves a snapshot of the old code.
CODE_VERSION = hashlib.sha256(
    b"".join(
        p.read_bytes()
        for p in sorted([_HERE / "analysis.py", _HERE / "selectors_analysis.py", *(_HERE / "stats").glob("*.py")])
    )
).hexdigest()
REFRESH_TIMEOUT = timedelta(minutes=15)  # a refresh asked for longer ago is taken as lost (the task's limit is 10)


def _fingerprint_sql() -> str:
    """(part, key, count, newest, extra) rows, every value as text, in a fixed order. Each part is an index lookup
    or a small table's rows (see the module docstring), never a scan of the reads or of the cases."""
    read, trial_assignments = _t(Read), f"{_t(ReaderAssignment)} a WHERE a.trial_id = %(trial)s"
    key = connection.ops.quote_name("key")

    def per_assignment(where: str, expression: str) -> str:
        return f"(SELECT {expression} FROM {read} r WHERE r.assignment_id = a.id AND {where})"  # noqa: S608

    def table(name: str, sql_table: str, where: str = "1 = 1", newest: str = "updated_at", count: bool = True):
        number = "CAST(COUNT(*) AS TEXT)" if count else "''"
        return (
            f"SELECT '{name}' AS part, '' AS k, {number} AS n, CAST(MAX({newest}) AS TEXT) AS t, "  # noqa: S608
            f"'' AS x FROM {sql_table} WHERE {where}"
        )

    created = per_assignment("1 = 1", "MAX(r.number)")
    signed_changed = per_assignment("r.status = 'signed'", "MAX(r.updated_at)")
    drafts = per_assignment("r.status <> 'signed'", "COUNT(*)")
    draft_newest = per_assignment("r.status <> 'signed'", "MAX(r.created_at)")
    parts = [
        # Per assignment: reads created (numbers run 1, 2, ...; the unique index), the newest change of a signed
        # read, the drafts' count and newest creation (partial indexes of evaluation's migration 0001).
        f"SELECT 'reads' AS part, CAST(a.id AS TEXT) AS k, CAST({created} AS TEXT) AS n, "  # noqa: S608
        f"CAST({signed_changed} AS TEXT) AS t, CAST({drafts} AS TEXT) || ' ' || COALESCE(CAST({draft_newest} AS TEXT), "
        f"'') AS x FROM {trial_assignments}",
        table("assignments", _t(ReaderAssignment), "trial_id = %(trial)s"),
        table("setup", _t(ReadingSetup), "trial_id = %(trial)s"),
        table("reference lock", _t(ReadingSetup), "trial_id = %(trial)s", newest="reference_locked_at"),
        table("trial", _t(Trial), "id = %(trial)s"),
        table("sites", _t(TrialSite), "trial_id = %(trial)s"),
        table(
            "hospitals",
            _t(Hospital),
            f"id IN (SELECT hospital_id FROM {_t(TrialSite)} WHERE trial_id = %(trial)s)",  # noqa: S608
        ),
        table("calibration", _t(CalibrationCase)),  # small tables: every row
        table("models", _t(ModelVersion)),
        # Case-level rows of every trial, newest change by index (evaluation's migration 0001; predictions are only
        # ever added): a change in another trial refreshes this one's analyses too, never the other way round.
        table("subjects", _t(Subject), count=False),
        table("cases", _t(Case), count=False),
        table("references", _t(ReferenceStandard), count=False),
        table("predictions", _t(Prediction), newest="created_at", count=False),
        # The data versions (evaluation.signals): bumped after each commit, so a write committed after a snapshot
        # was read changes the fingerprint even when it left every timestamp above unchanged.
        f"SELECT 'version' AS part, CAST(v.{key} AS TEXT) AS k, CAST(v.n AS TEXT) AS n, '' AS t, '' AS x "  # noqa: S608
        f"FROM {_t(DataVersion)} v WHERE v.{key} IN (%(trial)s, %(global)s)",
    ]
    union = " UNION ALL ".join(f"SELECT * FROM ({p}) p{i}" for i, p in enumerate(parts))  # noqa: S608
    return union + " ORDER BY 1, 2"


def _global_key() -> Any:
    return DataVersion._meta.get_field("key").get_db_prep_value(DataVersion.GLOBAL_KEY, connection)


@dataclass(frozen=True)
class Fingerprint:
    digest: str
    reads: int  # reads ever created in the trial (signed, drafts and discarded drafts): its size


def fingerprint(trial: Trial) -> Fingerprint:
    """The fingerprint of everything the trial's analyses read (see the module docstring): one query."""
    with connection.cursor() as cursor:
        cursor.execute(_fingerprint_sql(), {"trial": _trial_param(trial), "global": _global_key()})
        rows = cursor.fetchall()
    created = sum(int(n or 0) for part, _, n, _, _ in rows if part == "reads")
    text = json.dumps([CODE_VERSION, str(trial.pk), [list(map(str, row)) for row in rows]])
    return Fingerprint(hashlib.sha256(text.encode()).hexdigest(), created)


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as JSON (the report is JSON-ready but for these)."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def compute(trial: Trial) -> AnalysisSnapshot:
    """Compute the trial's analyses and store them with the fingerprint of the data they come from."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        start = time.perf_counter()
        found = fingerprint(trial)
        report = trial_analysis(trial)
        seconds = time.perf_counter() - start
    text = json.dumps(report, default=_plain)
    now = timezone.now()
    with transaction.atomic():
        snapshot, _ = AnalysisSnapshot.objects.select_for_update().get_or_create(trial=trial)
        snapshot.fingerprint = found.digest
        snapshot.report = text
        snapshot.computed_at = now
        snapshot.compute_seconds = seconds
        snapshot.refresh_requested_at = None
        snapshot.refresh_error = ""
        snapshot.refresh_failed_at = None
        snapshot.save()
    logger.info("analyses of trial %s computed in %.2f s (%d reads created)", trial.pk, seconds, found.reads)
    return snapshot


@dataclass
class Dashboard:
    """What the dashboard shows: a report (None while the first one is computed), whether it is the one of the
    data as they are now, and as of when."""

    report: dict[str, Any] | None
    current: bool
    computed_at: datetime | None
    refreshing: bool
    reads: int  # created in the trial (the fingerprint's measure of its size)
    error: str = ""
    retry_at: datetime | None = None  # a failed refresh: none is queued before then


def _retry_after() -> timedelta:
    return timedelta(seconds=settings.VISUS_DASHBOARD_RETRY_SECONDS)


def retry_at(snapshot: AnalysisSnapshot | None) -> datetime | None:
    """When a refresh may be queued again after the last one failed; None when one may be queued now."""
    if snapshot is None or snapshot.refresh_failed_at is None:
        return None
    at = snapshot.refresh_failed_at + _retry_after()
    return at if at > timezone.now() else None


def _request_refresh(trial: Trial) -> AnalysisSnapshot:
    """Queue one refresh unless one is in flight (asked for less than REFRESH_TIMEOUT ago) or the last one failed
    less than VISUS_DASHBOARD_RETRY_SECONDS ago (a failure that repeats, out of memory say, is not computed again on
    every visit)."""
    from evaluation.tasks import refresh_analysis_task

    snapshot, _ = AnalysisSnapshot.objects.get_or_create(trial=trial)
    now = timezone.now()
    claimed = (
        AnalysisSnapshot.objects.filter(pk=snapshot.pk)
        .exclude(refresh_requested_at__gte=now - REFRESH_TIMEOUT)
        .exclude(refresh_failed_at__gt=now - _retry_after())
        .update(refresh_requested_at=now, refresh_error="", refresh_failed_at=None)
    )
    if claimed:

        def send() -> None:
            try:
                refresh_analysis_task.apply_async(args=[str(trial.pk)], retry_policy={"max_retries": 2})
            except Exception as exc:  # the broker is down: say so, and the next visit asks again
                logger.exception("could not queue the refresh of trial %s's analyses", trial.pk)
                AnalysisSnapshot.objects.filter(pk=snapshot.pk).update(
                    refresh_requested_at=None, refresh_error=f"The refresh could not be queued: {exc}"[:300]
                )

        transaction.on_commit(send)
    snapshot.refresh_from_db()
    return snapshot


def _loaded(snapshot: AnalysisSnapshot) -> dict[str, Any] | None:
    return json.loads(snapshot.report) if snapshot.report else None


def dashboard(trial: Trial) -> Dashboard:
    """The trial's analyses for the dashboard (see the module docstring). The caller checks who may see them."""
    found = fingerprint(trial)
    snapshot = AnalysisSnapshot.objects.filter(trial=trial).first()
    if snapshot is not None and snapshot.report and snapshot.fingerprint == found.digest:
        return Dashboard(_loaded(snapshot), True, snapshot.computed_at, False, found.reads)
    if found.reads <= settings.VISUS_DASHBOARD_INLINE_READS:
        snapshot = compute(trial)
        return Dashboard(_loaded(snapshot), True, snapshot.computed_at, False, found.reads)
    snapshot = _request_refresh(trial)
    return Dashboard(
        _loaded(snapshot),
        False,
        snapshot.computed_at,
        snapshot.refresh_requested_at is not None,
        found.reads,
        snapshot.refresh_error,
        retry_at(snapshot),
    )


def refresh(trial_pk: str) -> dict[str, Any]:
    """The refresh task's work: compute unless the stored snapshot is already the current one; the flag of the
    refresh in flight is cleared in any case (a failure is noted for the page, with its time: no refresh is queued
    for VISUS_DASHBOARD_RETRY_SECONDS after it)."""
    trial = Trial.objects.get(pk=trial_pk)
    try:
        snapshot = AnalysisSnapshot.objects.filter(trial=trial).first()
        if snapshot is not None and snapshot.report and snapshot.fingerprint == fingerprint(trial).digest:
            AnalysisSnapshot.objects.filter(pk=snapshot.pk).update(refresh_requested_at=None)
            return {"computed": False}
        snapshot = compute(trial)
    except Exception as exc:
        AnalysisSnapshot.objects.filter(trial=trial).update(
            refresh_requested_at=None,
            refresh_error=f"The last refresh failed: {type(exc).__name__}.",
            refresh_failed_at=timezone.now(),
        )
        raise
    return {"computed": True, "seconds": snapshot.compute_seconds}


def status(trial: Trial) -> dict[str, Any]:
    """For the page's poll: when the stored snapshot was computed and whether a refresh is in flight (one row)."""
    snapshot = (
        AnalysisSnapshot.objects.filter(trial=trial)
        .only("computed_at", "refresh_requested_at", "refresh_error", "refresh_failed_at")
        .first()
    )
    computed_at = snapshot.computed_at if snapshot else None
    in_flight = bool(
        snapshot and snapshot.refresh_requested_at and snapshot.refresh_requested_at >= timezone.now() - REFRESH_TIMEOUT
    )
    again = retry_at(snapshot)
    return {
        "computed_at": computed_at.isoformat() if computed_at else None,
        "refreshing": in_flight,
        "error": snapshot.refresh_error if snapshot else "",
        "retry_at": again.isoformat() if again else None,
    }
