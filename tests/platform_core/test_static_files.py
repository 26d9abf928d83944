"""Static files (issue 10, item 11): the vendored plotly bundle holds every trace type the app draws, and the
production static setup (whitenoise's compressed manifest storage, also used by `make run`) serves hashed names
with a long cache and brotli/gzip copies."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from django.test import SimpleTestCase

from tests.support import ROOT

BUNDLE = ROOT / "static" / "vendor" / "plotly" / "plotly.min.js"
APP_PACKAGES = ("platform_core", "trials", "diagnosis", "reading", "evaluation", "demo")
# Trace types the evaluation dashboards draw (lines and confusion heatmaps), whichever way they build them.
PLANNED = {"scatter", "heatmap"}


def bundled_traces() -> set[str]:
    return set(re.findall(r'moduleType:"trace",name:"(\w+)"', BUNDLE.read_text(errors="replace")))


def traces_used() -> set[str]:
    """Trace types built anywhere in the app: plotly.graph_objects classes (go.Scatter) and {"type": "..."}."""
    used: set[str] = set()
    for package in APP_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(errors="replace")
            used |= {name.lower() for name in re.findall(r"\bgo\.([A-Z]\w*)\(", text) if name not in {"Figure"}}
            used |= set(re.findall(r"""["']type["']\s*:\s*["'](\w+)["']""", text)) & KNOWN_TRACES
    for path in [*(ROOT / "static" / "js").glob("*.js"), *(ROOT / "templates").rglob("*.html")]:
        used |= set(re.findall(r"""type["']?\s*:\s*["'](\w+)["']""", path.read_text(errors="replace"))) & KNOWN_TRACES
    return used


KNOWN_TRACES = {
    "bar", "barpolar", "box", "candlestick", "carpet", "choropleth", "cone", "contour", "funnel", "heatmap",
    "histogram", "histogram2d", "histogram2dcontour", "icicle", "image", "indicator", "isosurface", "mesh3d",
    "ohlc", "parcats", "parcoords", "pie", "sankey", "scatter", "scatter3d", "scattergeo", "scattergl",
    "scatterpolar", "scatterternary", "splom", "sunburst", "surface", "table", "treemap", "violin", "volume",
    "waterfall",
}  # fmt: skip


class PlotlyBundleTests(SimpleTestCase):
    def test_the_bundle_has_every_trace_type_the_app_draws(self):
        used = traces_used()
        self.assertIn("scatter", used)  # the accrual chart: the scan sees the app's figures
        missing = (used | PLANNED) - bundled_traces()
        self.assertEqual(missing, set(), "trace types drawn by the app but missing from static/vendor/plotly")

    def test_the_bundle_is_the_cartesian_one_not_the_full_one(self):
        self.assertLess(BUNDLE.stat().st_size, 2_000_000)
        self.assertNotIn("scattermapbox", bundled_traces())


SERVE = r"""
import django, json
django.setup()
from django.core.management import call_command
call_command("collectstatic", interactive=False, verbosity=0)
from django.conf import settings
from django.templatetags.static import static
from django.test import Client
url = static("vendor/plotly/plotly.min.js")
client = Client()
out = {"url": url, "storage": settings.STORAGES["staticfiles"]["BACKEND"], "finders": settings.WHITENOISE_USE_FINDERS}
for encoding in ("br", "gzip", ""):
    response = client.get(url, headers={"accept-encoding": encoding})
    body = b"".join(response.streaming_content)
    out[encoding or "identity"] = [response.status_code, response.get("Content-Encoding", ""),
                                   response.get("Cache-Control", ""), len(body)]
print(json.dumps(out))
"""


class ProductionStaticSetupTests(SimpleTestCase):
    def test_collectstatic_gives_hashed_compressed_long_cached_files(self):
        import json

        with tempfile.TemporaryDirectory() as data:
            env = {
                k: v
                for k, v in os.environ.items()
                if k not in ("DATABASE_URL", "DJANGO_STATIC_ROOT", "AWS_STORAGE_BUCKET_NAME")
            }
            env.update(
                {
                    "DJANGO_SETTINGS_MODULE": "platform_core.settings",
                    "VISUS_DATA_DIR": data,
                    "VISUS_STATIC_MANIFEST": "1",
                    "DJANGO_STATIC_ROOT": str(Path(data) / "static"),
                }
            )
            result = subprocess.run(
                [sys.executable, "-c", SERVE], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
            )
            self.assertEqual(result.returncode, 0, result.stderr[-3000:])
            out = json.loads(result.stdout.strip().splitlines()[-1])
        self.assertEqual(out["storage"], "whitenoise.storage.CompressedManifestStaticFilesStorage")
        self.assertFalse(out["finders"])
        self.assertRegex(out["url"], r"^/static/vendor/plotly/plotly\.min\.[0-9a-f]{12}\.js$")
        size = BUNDLE.stat().st_size
        for encoding, expected in (("br", "br"), ("gzip", "gzip"), ("identity", "")):
            with self.subTest(encoding=encoding):
                status, served, cache, length = out[encoding]
                self.assertEqual((status, served), (200, expected))
                self.assertIn("max-age=315360000", cache)
                self.assertIn("immutable", cache)
                self.assertLess(length, size / 3 if expected else size + 1)
