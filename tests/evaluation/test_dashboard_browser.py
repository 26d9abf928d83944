"""The analysis dashboard in headless Chromium (issue 12, item 7): a statistician opens it from the trial page, the
plotly figures render (SVG with the readers' points and the grade heatmaps), the analysis CSV downloads from the
exports page and loads into analyze_reads with the dashboard's reader AUCs; a reader is refused both pages; a
stale page follows its refresh on a live worker and reloads itself."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.test import override_settings, tag
from selenium.webdriver.common.by import By

from evaluation import snapshots
from evaluation.analysis import trial_analysis
from evaluation.models import AnalysisSnapshot
from evaluation.stats.reads import parse_reads_csv
from evaluation.stats.report import analyze
from reading.models import Read
from tests.support import BrowserTestCase, LiveWorker, require_redis_broker
from tests.support.dashboard import DashboardStudy
from tests.support.reading import PASSWORD


@tag("browser")
class DashboardInBrowserTests(BrowserTestCase, StaticLiveServerTestCase):
    def setUp(self):
        self.browser.delete_all_cookies()
        self.study = DashboardStudy()
        self.w = self.study.w
        self.dashboard = f"{self.live_server_url}/evaluation/trials/{self.w.trial.slug}/dashboard/"
        self.exports = f"{self.live_server_url}/evaluation/trials/{self.w.trial.slug}/exports/"

    def rendered(self, name: str):
        return self.wait_for(f"[data-dashboard-figure='{name}'][data-rendered='true']", timeout=30)

    def download(self, link_text: str) -> Path:
        folder = Path(tempfile.mkdtemp(prefix="visus-download-"))
        self.browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)})
        self.browser.find_element(By.LINK_TEXT, link_text).click()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = [p for p in folder.iterdir() if not p.name.endswith(".crdownload")]
            if done:
                return done[0]
            time.sleep(0.2)
        self.fail(f"{link_text} did not download")

    def test_a_statistician_sees_the_figures_and_reproduces_the_reader_aucs_from_the_csv(self):
        b = self.browser
        self.sign_in(self.w.statistician.email, PASSWORD)
        b.get(f"{self.live_server_url}/trials/{self.w.trial.slug}/")
        self.click_and_load(b.find_element(By.CSS_SELECTOR, "[data-testid=dashboard-link]"))
        self.assertEqual(b.current_url, self.dashboard)

        roc = self.rendered("roc-referable_dr")
        self.assertTrue(roc.find_elements(By.CSS_SELECTOR, "svg.main-svg"))
        # Six reader points (three readers, unaided and aided), four operating points, two curves.
        points = roc.find_elements(By.CSS_SELECTOR, ".scatterlayer .trace .points path")
        self.assertGreaterEqual(len(points), 10)
        self.assertIn("dr-dash 1", roc.text)
        heatmap = self.rendered("confusion-0")
        self.assertTrue(heatmap.find_elements(By.CSS_SELECTOR, ".heatmaplayer image, .hm image, image"))
        for name in ("kappa-referable_dr", "reliability-referable_dr", "drift", "progress", "accrual"):
            self.assertTrue(self.rendered(name).find_elements(By.CSS_SELECTOR, "svg.main-svg"), name)

        report = trial_analysis(self.w.trial)
        q = next(q for q in report["questions"] if q["key"] == "referable_dr")
        unaided = {r["reader"]: r["auc"]["auc"] for r in q["readers"] if r["phase"] == "unaided"}
        table = b.find_element(By.CSS_SELECTOR, "[data-testid=readers-referable_dr]").text
        for auc in unaided.values():
            self.assertIn(f"{auc:.3f}", table)

        b.get(self.exports)
        path = self.download("analysis_referable_dr.csv")
        with open(path, encoding="utf-8", newline="") as handle:
            loaded = parse_reads_csv(handle)
        self.assertEqual(len(loaded.cases), 10)  # the calibration case is not in it
        got = analyze(loaded)
        by_reader = {(row["reader"], row["modality"]): row["auc"] for row in got["auc_per_reader"]}
        aided = {r["reader"]: r["auc"]["auc"] for r in q["readers"] if r["phase"] == "aided"}
        for label, auc in aided.items():
            self.assertAlmostEqual(by_reader[(label, "aided")], auc, places=12)
        for label, auc in unaided.items():
            self.assertAlmostEqual(by_reader[(label, "unaided")], auc, places=12)

    def test_a_reader_is_refused_the_dashboard_and_the_exports(self):
        b = self.browser
        self.sign_in(self.w.reader.email, PASSWORD)
        b.get(f"{self.live_server_url}/trials/{self.w.trial.slug}/")
        self.assertFalse(b.find_elements(By.CSS_SELECTOR, "[data-testid=dashboard-link]"))
        for url in (self.dashboard, self.exports, f"{self.exports}analysis_referable_dr.csv"):
            b.get(url)
            body = b.find_element(By.TAG_NAME, "body").text
            self.assertIn("403", body, url)
            self.assertNotIn("Analyses of", body)
            self.assertNotIn("R01", body)


@tag("browser", "redis", "worker")
class DashboardRefreshInBrowserTests(BrowserTestCase, StaticLiveServerTestCase):
    """A large trial's changed analyses (VISUS_DASHBOARD_INLINE_READS=0 makes this one large) come from a live
    worker: the page shows the stored ones marked stale, asks the status URL (static/js/dashboard.js) and reloads
    itself with the new ones."""

    def setUp(self):
        broker = require_redis_broker()
        self.browser.delete_all_cookies()
        self.study = DashboardStudy()
        self.w = self.study.w
        self.dashboard = f"{self.live_server_url}/evaluation/trials/{self.w.trial.slug}/dashboard/"
        self.worker = LiveWorker(broker_url=broker, queues="default").start()
        self.addCleanup(self.worker.stop)
        from platform_core.celery import app

        self.worker.wait_ready(app)

    @override_settings(VISUS_DASHBOARD_INLINE_READS=0)
    def test_the_page_shows_the_last_figures_as_stale_and_reloads_with_the_refreshed_ones(self):
        b = self.browser
        stored = snapshots.compute(self.w.trial)
        read = Read.objects.filter(case=self.study.cases[0], status="signed").first()
        read.answers = {**read.answers, "referable_dr": "no" if read.answers["referable_dr"] == "yes" else "yes"}
        read.version += 1
        read.save()
        self.sign_in(self.w.statistician.email, PASSWORD)
        b.get(self.dashboard)
        self.assertTrue(b.find_elements(By.CSS_SELECTOR, "[data-testid=stale]"))
        self.assertIn("These figures are as of", b.find_element(By.CSS_SELECTOR, "[data-testid=stale]").text)
        self.assertTrue(b.find_elements(By.CSS_SELECTOR, "[data-testid=refreshing]"))
        self.wait_for("[data-dashboard-figure='roc-referable_dr'][data-rendered='true']", timeout=30)
        # The live worker computes them; the page notices and reloads itself.
        self.wait(90).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=current]"), message=self.worker.log_tail()
        )
        self.wait_for("[data-dashboard-figure='roc-referable_dr'][data-rendered='true']", timeout=30)
        self.assertFalse(b.find_elements(By.CSS_SELECTOR, "[data-testid=stale]"))
        fresh = AnalysisSnapshot.objects.get(trial=self.w.trial)
        self.assertGreater(fresh.computed_at, stored.computed_at)
        self.assertEqual(fresh.fingerprint, snapshots.fingerprint(self.w.trial).digest)
        self.assertIsNone(fresh.refresh_requested_at)
