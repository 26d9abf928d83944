"""First visit of a trial page in Chromium on loopback (issue 10, item 11): DOMContentLoaded and load, cold cache
and warm, with the production static setup (whitenoise's compressed manifest storage: hashed names, brotli/gzip,
long cache) behind gunicorn. Target: the first visit's DOMContentLoaded under 500 ms. Also prints what the plotly
bundle costs on the wire and the headers it is served with.

Builds a throw-away embedded install (SQLite, a temporary data folder): migrate, collectstatic, a trial with two
sites and accrual, its manager; starts gunicorn on a free loopback port; signs in once; then visits the trial page
``BENCH_PAGES_VISITS`` times (5) with an emptied browser cache, and as many times with a warm one. Run:
``make bench ARGS=bench_pages``.

Here (a shared 2-core machine, load average about 9, 5 visits each): first visit DOMContentLoaded median 222 ms
(max 692), load 897 ms; warm 228 ms, load 449 ms. The plotly cartesian bundle: 1,500,041 B, 410,135 B as brotli,
496,154 B as gzip, served with ``max-age=315360000, public, immutable``. Before (the full 4.8 MB bundle,
uncompressed, cached 60 s, loaded by a blocking script tag) the first visit took 1.3-1.9 s (issue 10).
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET_MS = 500.0
TIMING = """
const n = performance.getEntriesByType("navigation")[0];
const plotly = performance.getEntriesByType("resource").filter(r => r.name.includes("/plotly"))[0];
return {dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd, html: n.responseEnd,
        plotly_wire: plotly ? plotly.transferSize : null, plotly_body: plotly ? plotly.decodedBodySize : null};
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup(env: dict[str, str]) -> str:
    """Migrate, collect the static files and create the trial, in a child process with the bench's settings."""
    script = """
import django; django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
call_command("collectstatic", interactive=False, verbosity=0)
from tests.support.factories import TEST_PASSWORD, TrialWorld, enrol
w = TrialWorld()
for _ in range(6):
    enrol(coordinator=w.coord1, trial=w.trial, hospital=w.h1)
    enrol(coordinator=w.coord2, trial=w.trial, hospital=w.h2)
print(TEST_PASSWORD)
"""
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]  # the manager's password


def _wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - loopback URL built here
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f} s")


def _headers(url: str, encoding: str) -> tuple[str, str, int]:
    request = urllib.request.Request(url, headers={"Accept-Encoding": encoding})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        body = response.read()
        return (
            response.headers.get("Content-Encoding", "identity"),
            response.headers.get("Cache-Control", ""),
            len(body),
        )


def main() -> None:
    visits = int(os.environ.get("BENCH_PAGES_VISITS", "5"))
    data_dir = Path(tempfile.mkdtemp(prefix="visus-bench-pages-"))
    env = dict(os.environ)
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "AWS_STORAGE_BUCKET_NAME", "CACHE_URL"):
        env.pop(name, None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "platform_core.settings",
            "DJANGO_ENV": "development",
            "VISUS_DATA_DIR": str(data_dir),
            "VISUS_STATIC_MANIFEST": "1",
            "CELERY_TASK_ALWAYS_EAGER": "1",
            "OMP_WAIT_POLICY": "PASSIVE",
        }
    )
    server = None
    browser = None
    try:
        password = _setup(env)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
        server = subprocess.Popen(
            [gunicorn, "platform_core.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for(f"{base}/accounts/login/")

        from selenium.webdriver.common.by import By

        from tests.support import start_browser

        browser = start_browser()
        browser.get(f"{base}/accounts/login/")
        browser.find_element(By.NAME, "username").send_keys("manager@visus.example")
        browser.find_element(By.NAME, "password").send_keys(password)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        browser.find_element(By.CSS_SELECTOR, "[data-testid=user-name]")
        page = f"{base}/trials/dr-trial/"
        browser.execute_cdp_cmd("Network.enable", {})

        def visit(cold: bool) -> dict:
            if cold:
                browser.execute_cdp_cmd("Network.clearBrowserCache", {})
            browser.get("about:blank")
            browser.get(page)
            browser.find_element(By.CSS_SELECTOR, "[data-testid=accrual-chart][data-rendered=true]")
            return browser.execute_script(TIMING)

        cold = [visit(True) for _ in range(visits)]
        warm = [visit(False) for _ in range(visits)]
        for label, runs in (("first visit (empty cache)", cold), ("repeat visit (warm cache)", warm)):
            dcl = statistics.median(r["dcl"] for r in runs)
            load = statistics.median(r["load"] for r in runs)
            print(
                f"{label:<28} DOMContentLoaded median {dcl:6.0f} ms (max {max(r['dcl'] for r in runs):4.0f})  "
                f"load median {load:6.0f} ms  plotly over the wire {runs[-1]['plotly_wire'] or 0:>9,} B",
                flush=True,
            )
        bundle = browser.execute_script(
            "return performance.getEntriesByType('resource').filter(r => r.name.includes('/plotly'))[0].name;"
        )
        for encoding in ("br", "gzip", "identity"):
            served, cache, size = _headers(bundle, encoding)
            print(f"plotly asked as {encoding:<8} served {served:<8} {size:>9,} B  Cache-Control: {cache}", flush=True)
        first = statistics.median(r["dcl"] for r in cold)
        verdict = "met" if first < TARGET_MS else "MISSED"
        print(f"target: first visit DOMContentLoaded < {TARGET_MS:.0f} ms: {verdict} ({first:.0f} ms)", flush=True)
    finally:
        if browser is not None:
            browser.quit()
        if server is not None:
            server.terminate()
            server.wait(20)
        shutil.rmtree(data_dir, ignore_errors=True)
