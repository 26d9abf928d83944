"""The data version of the dashboard's inputs (``evaluation.models.DataVersion``): after every committed save or
delete of a row the analyses read, the version of its trial (or the global one, for rows of every trial) goes up
by one in a transaction of its own.

Why: the fingerprint's timestamps are set when a row is saved, not when its transaction commits, so a row saved
early in a long transaction and committed after a snapshot was stored can leave every MAX(updated_at) unchanged
(and clocks of two hosts may disagree). The version is bumped only after the commit, and read in the same
consistent snapshot as the data (``evaluation.snapshots``): a snapshot that did not see a write read a version
lower than the one every later fingerprint reads, so it is never current again.

The bump is one ``INSERT ... ON CONFLICT DO UPDATE SET n = n + 1`` in autocommit from ``transaction.on_commit``:
it holds the row's lock for that statement only, never while the writer's transaction is open. ``robust``: a
failed bump is logged, never raised into the request whose data are already committed.

Assumptions (see also the module docstring of ``evaluation.snapshots``): writes go through the ORM's ``save`` /
``delete`` (bulk ``QuerySet.update`` and raw SQL send no signals, and leave ``updated_at`` alone too); a process
that dies between its commit and its bump leaves the version unchanged, and the timestamps then still change the
fingerprint unless a snapshot was computed, in the few milliseconds before the commit, from a newer row's
timestamp."""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection, transaction
from django.db.models import Model
from django.db.models.signals import post_delete, post_save

from diagnosis.models import ModelVersion, Prediction
from evaluation.models import DataVersion
from platform_core.accounts.models import Hospital
from reading.models import CalibrationCase, Read, ReaderAssignment, ReadingSetup
from trials.models import Case, ReferenceStandard, Subject, Trial, TrialSite

logger = logging.getLogger(__name__)

# The inputs of the analyses (the tables of the fingerprint) with the trial their rows belong to: "trial_id" (a
# column of the row), "pk" (the trial itself), "assignment" (a read: its assignment's trial) or None (the rows of
# every trial: the global version).
INPUTS: dict[type[Model], str | None] = {
    Trial: "pk",
    ReadingSetup: "trial_id",
    ReaderAssignment: "trial_id",
    TrialSite: "trial_id",
    Subject: "trial_id",
    Read: "assignment",
    Hospital: None,
    CalibrationCase: None,
    ModelVersion: None,
    Case: None,
    ReferenceStandard: None,
    Prediction: None,
}


def _key(value: Any) -> Any:
    return DataVersion._meta.get_field("key").get_db_prep_value(value, connection)


def bump(source_sql: str, params: list[Any]) -> None:
    """Add one to the version whose key ``source_sql`` (a VALUES or SELECT of (key, 1)) gives, creating it at 1."""
    table, key = connection.ops.quote_name(DataVersion._meta.db_table), connection.ops.quote_name("key")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({key}, n) {source_sql} ON CONFLICT ({key}) DO UPDATE SET n = {table}.n + 1",
            params,
        )


def _bump_for(model: type[Model], instance: Model) -> None:
    how = INPUTS[model]
    if how == "assignment":  # the read's trial is its assignment's: looked up by the bump itself, no query here
        sql = f"SELECT trial_id, 1 FROM {ReaderAssignment._meta.db_table} WHERE id = %s"  # noqa: S608
        params = [ReaderAssignment._meta.pk.get_db_prep_value(instance.assignment_id, connection)]  # type: ignore[attr-defined]
    else:
        key = DataVersion.GLOBAL_KEY if how is None else (instance.pk if how == "pk" else getattr(instance, how))
        sql, params = "VALUES (%s, 1)", [_key(key)]

    def after_commit() -> None:
        bump(sql, params)

    transaction.on_commit(after_commit, robust=True)


def _written(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    _bump_for(sender, instance)


def connect() -> None:
    """Called by the evaluation app's ready(): every input model's saves and deletes bump its version."""
    for model in INPUTS:
        uid = f"evaluation-data-version-{model._meta.label_lower}"
        post_save.connect(_written, sender=model, dispatch_uid=f"{uid}-save")
        post_delete.connect(_written, sender=model, dispatch_uid=f"{uid}-delete")
