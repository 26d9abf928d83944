"""The import-linter contracts in pyproject.toml (run by `make lint` and `make test`) keep the layers.

Checked on a copy of the code, so the repository itself is never edited: the contracts hold today, and an
upward import, Django in a pure core, or DRF in a service breaks them with a message naming the import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from django.test import SimpleTestCase

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
# Every package the contracts name (a new app joins root_packages and is copied with the rest).
PACKAGES = tuple(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"])
CONTRACTS = (
    "Layers: demo > evaluation > reading > diagnosis > trials > platform_core",
    "Pure cores (de-identification and parsing, networks, training) import no Django",
    "Models, services, selectors and admin pages import no DRF",
)


class LayerContractTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.TemporaryDirectory()
        cls.copy = Path(cls.tmp.name)
        shutil.copy(ROOT / "pyproject.toml", cls.copy)
        ignore = shutil.ignore_patterns("__pycache__", "*.jpg", "*.csv", "*.json", "*.md")
        for package in PACKAGES:
            shutil.copytree(ROOT / package, cls.copy / package, ignore=ignore)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()
        super().tearDownClass()

    def lint(self) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(self.copy)}
        return subprocess.run(
            [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
            cwd=self.copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def edited(self, path: str, text: str):
        """Append ``text`` to a module of the copy for the duration of a with-block."""
        target = self.copy / path
        original = target.read_text()
        test = self

        class Edit:
            def __enter__(self):
                target.write_text(original + text)

            def __exit__(self, *exc):
                target.write_text(original)
                test.assertEqual(target.read_text(), original)

        return Edit()

    def test_every_contract_is_declared_and_kept(self):
        result = self.lint()
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        output = " ".join(result.stdout.split())
        for name in CONTRACTS:
            self.assertIn(name, output)
        self.assertIn(f"Contracts: {len(CONTRACTS)} kept, 0 broken.", output)

    def test_an_upward_import_fails_the_lint_naming_it(self):
        upward = "\n\ndef _upward():\n    from diagnosis.selectors import case_inference_context\n\n    return 1\n"
        with self.edited("trials/views.py", upward):
            result = self.lint()
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertIn("trials is not allowed to import diagnosis", result.stdout)
        self.assertIn("trials.views -> diagnosis.selectors", result.stdout)

    def test_the_kernel_may_not_import_trials(self):
        with self.edited("platform_core/accounts/selectors.py", "\nimport trials.models  # noqa\n"):
            result = self.lint()
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertIn("platform_core is not allowed to import trials", result.stdout)

    def test_django_in_a_pure_core_fails_the_lint(self):
        for module in ("trials/uploads/detect.py", "diagnosis/networks/fusion.py", "diagnosis/training/runner.py"):
            with self.subTest(module=module), self.edited(module, "\nfrom django.conf import settings  # noqa\n"):
                result = self.lint()
                self.assertEqual(result.returncode, 1, result.stdout)
                self.assertIn("is not allowed to import django", result.stdout)

    def test_drf_in_a_service_fails_the_lint(self):
        with self.edited("trials/services.py", "\nfrom platform_core.api.exceptions import error_body  # noqa\n"):
            result = self.lint()
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertIn("trials.services is not allowed to import rest_framework", result.stdout)

    def test_drf_in_an_admin_fails_the_lint_even_from_inside_a_function(self):
        hidden = (
            "\n\ndef _hidden():\n    from platform_core.api.exceptions import ApplicationError\n\n"
            "    return ApplicationError\n"
        )
        for module in ("platform_core/audit/admin_mixins.py", "trials/admin.py"):
            with self.subTest(module=module), self.edited(module, hidden):
                result = self.lint()
                self.assertEqual(result.returncode, 1, result.stdout)
                self.assertIn("admin", result.stdout)
                self.assertIn("is not allowed to import rest_framework", result.stdout)
