"""The dashboard's stored analyses (evaluation.snapshots, issue 13 item 10): the fingerprint of the inputs changes
with each of them, the stored analyses are served only while it is unchanged (and are then the very figures a fresh
computation gives), a stale snapshot is shown marked with its time while one refresh is queued, and who may see
the dashboard and its status is unchanged. The refresh on a live worker, seen in the browser, is in
tests/evaluation/test_dashboard_browser.py."""

from __future__ import annotations

import json
import re
import threading
from datetime import timedelta
from unittest import mock

from django.db import connection, transaction
from django.test import TestCase, TransactionTestCase, override_settings
from django.urls import reverse
from django.utils import timezone

from diagnosis.models import InferenceJob, Prediction
from evaluation import dashboard, signals, snapshots
from evaluation.analysis import trial_analysis
from evaluation.models import AnalysisSnapshot, DataVersion
from evaluation.selectors_analysis import _trial_param
from evaluation.tasks import refresh_analysis_task
from platform_core.accounts.models import Role
from reading import services as reading_services
from reading.models import CalibrationCase, Read, ReaderAssignment
from tests.support import require_postgresql
from tests.support.dashboard import DashboardStudy, model_version, predict
from tests.support.factories import MembershipFactory
from tests.support.reading import PASSWORD
from trials.services import reference_standard_record

FIGURES = re.compile(r'<script id="dashboard-figures" type="application/json">(.*?)</script>', re.S)


def figures_of(response) -> dict | None:
    found = FIGURES.search(response.content.decode())
    return json.loads(found.group(1)) if found else None


def version(key) -> int:
    return DataVersion.objects.filter(key=key).values_list("n", flat=True).first() or 0


def predict_again(case, model, digest: str) -> Prediction:
    """The model run again on the case (a new input digest): its newest prediction counts."""
    InferenceJob.objects.filter(case=case, model_version=model).update(is_current=False)
    job = InferenceJob.objects.create(case=case, model_version=model, status="succeeded", input_digest=digest)
    return Prediction.objects.create(job=job, case=case, model_version=model, runtime_ms=1.0, referable_probability=0.4)


class FingerprintTests(TestCase):
    """Each input of the analyses, changed through its service where it has one, changes the fingerprint."""

    @classmethod
    def setUpTestData(cls):
        cls.study = DashboardStudy(sign_aided=False, lock=False)
        cls.w = cls.study.w

    def assertChanges(self, label: str, change) -> None:
        before = snapshots.fingerprint(self.w.trial)
        change()
        after = snapshots.fingerprint(self.w.trial)
        self.assertNotEqual(before.digest, after.digest, f"{label} left the fingerprint unchanged")

    def test_the_fingerprint_is_stable_while_nothing_changes(self):
        self.assertEqual(snapshots.fingerprint(self.w.trial), snapshots.fingerprint(self.w.trial))
        self.assertEqual(snapshots.fingerprint(self.w.trial).reads, Read.objects.count())

    def test_each_input_changes_it(self):
        w, reader = self.w, self.w.reader
        drafted: list[Read] = []

        def draft() -> None:
            read = reading_services.read_next(reader=reader, trial=w.trial, phase="aided")
            answers, confidences = self.study.answers(read.case, 0, aided=True)
            drafted.append(
                reading_services.read_draft_save(
                    reader=reader, read=read, version=read.version, answers=answers, confidences=confidences, seconds=5
                )
            )

        def sign() -> None:
            read = drafted[0]
            reading_services.read_sign(
                read=read, signer=reader, password=PASSWORD, meaning=reading_services.MEANING_READ, version=read.version
            )

        def amend() -> None:
            read = Read.objects.get(pk=drafted[0].pk)
            answers, confidences = dict(read.answers), dict(read.confidences)
            answers["referable_dr"] = "no" if answers["referable_dr"] == "yes" else "yes"
            reading_services.read_amend(
                read=read,
                signer=reader,
                password=PASSWORD,
                meaning=reading_services.MEANING_AMEND,
                reason="Pressed the wrong answer",
                version=read.version,
                answers=answers,
                confidences=confidences,
            )

        case = self.study.cases[0]
        self.assertChanges("a draft saved", draft)
        self.assertChanges("a read signed", sign)
        self.assertChanges("a read amended", amend)
        self.assertChanges(
            "a reference standard changed",
            lambda: reference_standard_record(actor=w.manager, case=case, source="imported", icdr_grade=4, reason="x"),
        )
        self.assertChanges(
            "the reference standard locked",
            lambda: reading_services.reference_lock(
                actor=w.manager, trial=w.trial, password=PASSWORD, meaning=reading_services.MEANING_LOCK
            ),
        )

        def again() -> None:  # the model run again on the case (a new input digest): its newest prediction counts
            InferenceJob.objects.filter(case=case, model_version=self.study.models[0]).update(is_current=False)
            job = InferenceJob.objects.create(
                case=case, model_version=self.study.models[0], status="succeeded", input_digest="again"
            )
            Prediction.objects.create(
                job=job, case=case, model_version=job.model_version, runtime_ms=1.0, referable_probability=0.42
            )

        self.assertChanges("a prediction stored", again)
        self.assertChanges(
            "a new model version's prediction", lambda: predict(model_version("dr-x", "9"), case, 0.3, 1)
        )

        def exclude() -> None:
            case.refresh_from_db()
            case.status, case.exclusion_reason = "excluded", "Ungradable images"
            case.save()

        self.assertChanges("a case excluded", exclude)

        def subject() -> None:
            s = case.subject
            s.refresh_from_db()
            s.age = "77"
            s.save()

        self.assertChanges("a subject's age", subject)

        def form() -> None:
            w.trial.refresh_from_db()
            w.trial.reading_form = [key for key in w.trial.reading_form if key != "glaucoma"] + ["glaucoma"]
            w.trial.save()

        self.assertChanges("the trial's reading form", form)
        patch = mock.patch.object(snapshots, "CODE_VERSION", "another version of the analysis code")
        self.assertChanges("the analysis code", patch.start)
        patch.stop()


class DataVersionTests(TestCase):
    """Every committed save or delete of an input bumps its trial's data version (or the global one), which is part
    of the fingerprint; a write rolled back bumps nothing."""

    @classmethod
    def setUpTestData(cls):
        cls.study = DashboardStudy(sign_aided=False, lock=False)
        cls.w = cls.study.w

    def test_each_input_bumps_its_version_after_its_commit(self):
        w, case, trial = self.w, self.study.cases[0], self.w.trial.pk
        everyone = DataVersion.GLOBAL_KEY
        inputs = [
            (w.trial, trial),
            (w.trial.reading_setup, trial),
            (ReaderAssignment.objects.filter(trial=w.trial).first(), trial),
            (w.trial.sites.first(), trial),
            (case.subject, trial),
            (Read.objects.filter(assignment__trial=w.trial).first(), trial),
            (w.h1, everyone),
            (CalibrationCase.objects.get(case=self.study.calibration), everyone),
            (self.study.models[0], everyone),
            (case, everyone),
            (case.reference, everyone),
            (Prediction.objects.filter(case=case).first(), everyone),
        ]
        self.assertEqual({type(instance) for instance, _ in inputs}, set(signals.INPUTS))
        for instance, key in inputs:
            with self.subTest(type(instance).__name__):
                before, other = version(key), version(everyone if key == trial else trial)
                with self.captureOnCommitCallbacks(execute=True):
                    instance.save()
                    self.assertEqual(version(key), before)  # not before the commit
                self.assertEqual(version(key), before + 1)
                self.assertEqual(version(everyone if key == trial else trial), other)
        doomed = model_version("dr-gone", "1")
        before = version(everyone)
        with self.captureOnCommitCallbacks(execute=True):
            doomed.delete()
        self.assertEqual(version(everyone), before + 1)

    def test_a_write_rolled_back_bumps_nothing_and_a_bump_alone_changes_the_fingerprint(self):
        before, digest = version(self.w.trial.pk), snapshots.fingerprint(self.w.trial).digest
        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            try:
                with transaction.atomic():
                    self.w.trial.save()
                    raise RuntimeError("rolled back")
            except RuntimeError:
                pass
        self.assertEqual(callbacks, [])
        self.assertEqual(version(self.w.trial.pk), before)
        self.assertEqual(snapshots.fingerprint(self.w.trial).digest, digest)
        for key in (self.w.trial.pk, DataVersion.GLOBAL_KEY):
            signals.bump("VALUES (%s, 1)", [signals._key(key)])
            self.assertNotEqual(snapshots.fingerprint(self.w.trial).digest, digest)
            digest = snapshots.fingerprint(self.w.trial).digest


class LateCommitTests(TransactionTestCase):
    """The reviewer's case, on PostgreSQL with two connections: a prediction saved at t1 in a transaction that
    commits after another one saved at t2 > t1 was committed and a snapshot stored. Every MAX(timestamp) of the
    fingerprint is then the same as the snapshot's; the data version is not, so the snapshot is no longer current."""

    def test_a_write_committed_after_the_snapshot_with_an_older_timestamp_makes_it_stale(self):
        require_postgresql()
        study = DashboardStudy(sign_aided=False, lock=False)
        trial, model = study.w.trial, study.models[0]
        saved, release, late = threading.Event(), threading.Event(), []

        def timestamps() -> list:
            """The fingerprint's rows but the data versions: what it was before them."""
            with connection.cursor() as cursor:
                cursor.execute(
                    snapshots._fingerprint_sql(), {"trial": _trial_param(trial), "global": snapshots._global_key()}
                )
                return [row for row in cursor.fetchall() if row[0] != "version"]

        def worker_a() -> None:
            try:
                with transaction.atomic():
                    late.append(predict_again(study.cases[0], model, "late"))
                    saved.set()
                    release.wait(timeout=60)
            finally:
                connection.close()

        thread = threading.Thread(target=worker_a)
        thread.start()
        try:
            self.assertTrue(saved.wait(timeout=60))
            early = predict_again(study.cases[1], model, "early")  # worker B: saved after A, committed at once
            self.assertLess(late[0].created_at, early.created_at)
            stored = snapshots.compute(trial)
            then = timestamps()
            self.assertFalse(Prediction.objects.filter(pk=late[0].pk).exists())  # not committed: not in it
        finally:
            release.set()
            thread.join(timeout=60)
        self.assertTrue(Prediction.objects.filter(pk=late[0].pk).exists())
        # The bug: without the data versions the fingerprint is the one the snapshot was computed with...
        self.assertEqual(timestamps(), then)
        # ...but the data version moved after A's commit: the snapshot is not current, and is computed again.
        self.assertNotEqual(snapshots.fingerprint(trial).digest, stored.fingerprint)
        shown = snapshots.dashboard(trial)
        self.assertTrue(shown.current)
        self.assertGreater(shown.computed_at, stored.computed_at)
        self.assertEqual(AnalysisSnapshot.objects.get(trial=trial).fingerprint, snapshots.fingerprint(trial).digest)


class SnapshotPageTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.study = DashboardStudy()
        cls.w = cls.study.w
        cls.url = reverse("evaluation:dashboard", args=[cls.w.trial.slug])
        cls.status_url = reverse("evaluation:dashboard-status", args=[cls.w.trial.slug])

    def get(self, user=None, url=None):
        self.client.force_login(user or self.w.statistician)
        return self.client.get(url or self.url)

    def change_a_read(self) -> None:
        read = Read.objects.filter(case=self.study.cases[0], status="signed").first()
        read.answers = {**read.answers, "referable_dr": "no" if read.answers["referable_dr"] == "yes" else "yes"}
        read.version += 1
        read.save()

    def test_the_second_visit_serves_the_stored_figures_which_are_the_fresh_ones(self):
        first = self.get()
        self.assertContains(first, 'data-testid="current"')
        snapshot = AnalysisSnapshot.objects.get(trial=self.w.trial)
        with mock.patch.object(snapshots, "trial_analysis", side_effect=AssertionError("computed again")):
            second = self.get(self.w.monitor)  # another person, the same figures
        self.assertContains(second, 'data-testid="current"')
        self.assertEqual(AnalysisSnapshot.objects.get(trial=self.w.trial).computed_at, snapshot.computed_at)
        fresh = json.loads(json.dumps(dashboard.figures(trial_analysis(self.w.trial)), default=snapshots._plain))
        self.assertEqual(json.dumps(figures_of(second)), json.dumps(fresh))
        self.assertEqual(figures_of(first), figures_of(second))
        # The tables too: the page from the stored report is the page of the fresh one.
        body = re.compile(r'data-testid="reference-state".*', re.S)
        self.assertEqual(body.search(first.content.decode()).group(0), body.search(second.content.decode()).group(0))

    def test_changed_data_are_computed_again_in_the_request_for_a_small_trial(self):
        self.get()
        before = AnalysisSnapshot.objects.get(trial=self.w.trial)
        self.change_a_read()
        response = self.get()
        self.assertContains(response, 'data-testid="current"')
        after = AnalysisSnapshot.objects.get(trial=self.w.trial)
        self.assertNotEqual(after.fingerprint, before.fingerprint)
        self.assertEqual(after.fingerprint, snapshots.fingerprint(self.w.trial).digest)
        self.assertEqual(
            json.loads(after.report)["questions"],
            json.loads(json.dumps(trial_analysis(self.w.trial)["questions"], default=snapshots._plain)),
        )

    @override_settings(VISUS_DASHBOARD_INLINE_READS=0)
    def test_a_stale_snapshot_is_shown_with_its_time_never_as_current_and_one_refresh_is_queued(self):
        with mock.patch.object(refresh_analysis_task, "apply_async") as queued:
            with self.captureOnCommitCallbacks(execute=True):
                response = self.get()
            self.assertContains(response, 'data-testid="computing"')  # nothing stored yet: no figures at all
            self.assertIsNone(figures_of(response))
            self.assertContains(response, 'data-refreshing="true"')
            self.assertEqual(queued.call_count, 1)
            snapshots.refresh(str(self.w.trial.pk))  # what the worker runs
            old = figures_of(self.get())
            self.assertIsNotNone(old)
            stored = AnalysisSnapshot.objects.get(trial=self.w.trial)
            self.assertIsNone(stored.refresh_requested_at)

            self.change_a_read()
            for user in (self.w.statistician, self.w.monitor):  # two visits, one refresh
                with self.captureOnCommitCallbacks(execute=True):
                    response = self.get(user)
                self.assertContains(response, 'data-testid="stale"')
                self.assertNotContains(response, 'data-testid="current"')
                self.assertContains(response, "These figures are as of")
                self.assertContains(response, 'data-testid="refreshing"')
                self.assertEqual(figures_of(response), old)
            self.assertEqual(queued.call_count, 2)
            self.assertEqual(queued.call_args.kwargs["args"], [str(self.w.trial.pk)])
            status = self.get(url=self.status_url).json()
            self.assertTrue(status["refreshing"])
            self.assertEqual(status["computed_at"], stored.computed_at.isoformat())

            self.assertEqual(snapshots.refresh(str(self.w.trial.pk)), {"computed": True, "seconds": mock.ANY})
            response = self.get()
            self.assertContains(response, 'data-testid="current"')
            self.assertNotEqual(figures_of(response), old)
            self.assertFalse(self.get(url=self.status_url).json()["refreshing"])
            # Delivered twice (acks late): the second finds the stored analyses current and computes nothing.
            self.assertEqual(snapshots.refresh(str(self.w.trial.pk)), {"computed": False})
            self.assertEqual(queued.call_count, 2)

    @override_settings(VISUS_DASHBOARD_INLINE_READS=0)
    def test_a_broker_that_refuses_the_refresh_is_said_and_the_next_visit_asks_again(self):
        with mock.patch.object(refresh_analysis_task, "apply_async", side_effect=ConnectionError("broker down")):
            with self.captureOnCommitCallbacks(execute=True):
                self.get()
        response = self.get(url=self.status_url).json()
        self.assertFalse(response["refreshing"])
        self.assertIn("could not be queued", response["error"])
        with mock.patch.object(refresh_analysis_task, "apply_async") as queued:
            with self.captureOnCommitCallbacks(execute=True):
                page = self.get()
        self.assertEqual(queued.call_count, 1)
        self.assertContains(page, 'data-testid="refreshing"')

    def test_a_failed_refresh_clears_its_flag_and_says_so(self):
        AnalysisSnapshot.objects.create(trial=self.w.trial, refresh_requested_at="2026-01-01T00:00:00Z")
        with (
            mock.patch.object(snapshots, "trial_analysis", side_effect=ValueError("boom")),
            self.assertRaises(ValueError),
        ):
            snapshots.refresh(str(self.w.trial.pk))
        stored = AnalysisSnapshot.objects.get(trial=self.w.trial)
        self.assertIsNone(stored.refresh_requested_at)
        self.assertIn("failed", stored.refresh_error)
        self.assertIsNotNone(stored.refresh_failed_at)
        self.assertEqual(stored.report, "")

    @override_settings(VISUS_DASHBOARD_INLINE_READS=0, VISUS_DASHBOARD_RETRY_SECONDS=600)
    def test_a_failed_refresh_is_not_queued_again_on_each_visit_until_its_back_off_ends(self):
        pk = str(self.w.trial.pk)
        with mock.patch.object(refresh_analysis_task, "apply_async") as queued:
            with self.captureOnCommitCallbacks(execute=True):
                self.get()
            self.assertEqual(queued.call_count, 1)
            with (
                mock.patch.object(snapshots, "trial_analysis", side_effect=MemoryError()),
                self.assertRaises(MemoryError),
            ):
                snapshots.refresh(pk)  # a failure that would repeat (a trial too large for the worker's memory)
            failed_at = AnalysisSnapshot.objects.get(trial=self.w.trial).refresh_failed_at
            retry = (failed_at + timedelta(seconds=600)).isoformat()
            for user in (self.w.statistician, self.w.monitor, self.w.statistician):
                with self.captureOnCommitCallbacks(execute=True):
                    page = self.get(user)
                self.assertContains(page, 'data-testid="refresh-error"')
                self.assertContains(page, "The last refresh failed: MemoryError.")
                self.assertContains(page, 'data-testid="retry-at"')
                self.assertNotContains(page, 'data-testid="refreshing"')
                self.assertNotContains(page, 'data-refreshing="true"')
            self.assertEqual(queued.call_count, 1)
            status = self.get(url=self.status_url).json()
            self.assertEqual((status["refreshing"], status["retry_at"]), (False, retry))
            self.assertIn("MemoryError", status["error"])

            # Ten minutes on, the next visit queues it again (and the page no longer names a retry time).
            AnalysisSnapshot.objects.filter(trial=self.w.trial).update(
                refresh_failed_at=timezone.now() - timedelta(seconds=601)
            )
            with self.captureOnCommitCallbacks(execute=True):
                page = self.get()
            self.assertEqual(queued.call_count, 2)
            self.assertContains(page, 'data-testid="refreshing"')
            self.assertNotContains(page, 'data-testid="refresh-error"')
            self.assertIsNone(self.get(url=self.status_url).json()["retry_at"])
            snapshots.refresh(pk)
            self.assertContains(self.get(), 'data-testid="current"')

    def test_who_may_see_the_stored_analyses_and_their_status_is_unchanged(self):
        self.assertEqual(self.get().status_code, 200)  # stored now
        self.assertTrue(AnalysisSnapshot.objects.filter(trial=self.w.trial).exclude(report="").exists())
        MembershipFactory(user=self.w.reader, hospital=self.w.h1, role=Role.STATISTICIAN)
        for url in (self.url, self.status_url):
            for user in (self.w.reader, self.w.reader2, self.w.coord1, self.w.adjudicator):
                with self.subTest(url=url, user=user.email):
                    response = self.get(user, url)
                    self.assertEqual(response.status_code, 403)
                    self.assertNotIn(b"AUC", response.content)
                    self.assertNotIn(b"computed_at", response.content)
            self.assertIn(self.get(self.w.outsider, url).status_code, (403, 404))
            self.client.logout()
            self.assertEqual(self.client.get(url).status_code, 302)
        self.assertEqual(self.get(self.w.monitor, self.status_url).status_code, 200)
        self.assertEqual(self.client.post(self.status_url).status_code, 405)
