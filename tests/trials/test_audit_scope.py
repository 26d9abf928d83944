"""The audit app knows no trial: trials registers the scope that gives reviewers trial-wide oversight."""

from __future__ import annotations

from unittest import mock

from django.test import TestCase

from platform_core.audit import selectors as audit_selectors
from platform_core.audit.models import AuditEvent
from platform_core.audit.selectors import audit_events_for
from tests.support.factories import TrialWorld, make_trial
from trials.selectors import audit_scope


class TrialAuditScopeTests(TestCase):
    def setUp(self):
        self.w = TrialWorld()
        # A trial at H02 only: the monitor (at H01) has no role in it.
        make_trial(manager=self.w.manager, hospitals=[self.w.h2], slug="h2-only", prefix="HT")

    def h02_events_of(self, slug: str, user) -> list[AuditEvent]:
        return list(audit_events_for(user).filter(hospital_code="H02", trial_ref=slug))

    def test_trials_registers_its_scope_with_the_audit_app(self):
        self.assertIn(audit_scope, audit_selectors._scope_providers)

    def test_a_monitor_sees_the_events_of_their_trial_at_other_sites_and_nothing_of_other_trials(self):
        self.assertTrue(AuditEvent.objects.filter(hospital_code="H02", trial_ref="dr-trial").exists())
        self.assertTrue(self.h02_events_of("dr-trial", self.w.monitor))
        self.assertFalse(self.h02_events_of("h2-only", self.w.monitor))
        self.assertFalse(audit_events_for(self.w.outsider).filter(trial_ref="dr-trial").exists())

    def test_without_the_trials_scope_a_monitor_sees_only_their_own_hospital(self):
        with mock.patch.object(audit_selectors, "_scope_providers", []):
            self.assertFalse(self.h02_events_of("dr-trial", self.w.monitor))
            self.assertTrue(audit_events_for(self.w.monitor).filter(hospital_code="H01").exists())
