"""The statistics core is pure: importing every module of evaluation.stats loads no Django, DRF or Celery."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.test import SimpleTestCase

import evaluation.stats


class PurityTests(SimpleTestCase):
    def test_no_module_of_the_core_imports_django(self):
        modules = [f"evaluation.stats.{m.name}" for m in pkgutil.iter_modules(evaluation.stats.__path__)]
        self.assertIn("evaluation.stats.mrmc", modules)
        code = (
            "import importlib, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'rest_framework', 'celery'))\n"
            "print(','.join(loaded))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=Path(settings.BASE_DIR),
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(settings.BASE_DIR)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.strip(), "", "evaluation.stats imported Django/DRF/Celery")
