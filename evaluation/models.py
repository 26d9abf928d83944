"""The stored result of a trial's analyses (the dashboard's snapshot), keyed by the fingerprint of its inputs."""

from __future__ import annotations

import uuid

from django.db import models

from platform_core.models import BaseModel
from trials.models import Trial


class AnalysisSnapshot(BaseModel):
    """The last computed analyses of a trial (``evaluation.snapshots``): the report as JSON text with the
    fingerprint of the data it was computed from, and when a refresh was asked for (while it is in flight).
    One row per trial; derived data only (recomputed from the signed reads at any time), so not audited."""

    trial = models.OneToOneField(Trial, on_delete=models.CASCADE, related_name="analysis_snapshot")
    fingerprint = models.CharField(max_length=64, blank=True, help_text="Of the inputs of ``report``.")
    report = models.TextField(blank=True, help_text="evaluation.analysis.trial_analysis as JSON; empty: none yet.")
    computed_at = models.DateTimeField(null=True, blank=True)
    compute_seconds = models.FloatField(null=True, blank=True)
    refresh_requested_at = models.DateTimeField(null=True, blank=True)
    refresh_error = models.CharField(max_length=300, blank=True)
    refresh_failed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the last refresh failed: none is queued for a while after."
    )

    def __str__(self) -> str:
        return f"analyses of {self.trial_id} as of {self.computed_at}"


class DataVersion(models.Model):
    """How many committed writes to the inputs of the analyses there have been (``evaluation.snapshots``): one row
    per trial (``key`` its id) for the rows of one trial, one (``key`` ``GLOBAL_KEY``) for the rows of every trial.
    Bumped after each commit by ``evaluation.signals``; part of the fingerprint, so a snapshot read from the data
    before a commit is never taken as current after it, whatever the timestamps of its rows."""

    GLOBAL_KEY = uuid.UUID(int=0)

    key = models.UUIDField(unique=True)
    n = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"data version {self.n} of {self.key}"
