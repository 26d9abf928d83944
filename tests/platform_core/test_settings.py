import os
import subprocess
import sys
import tempfile

from django.test import SimpleTestCase

from platform_core.config import Env, MissingSetting, sqlite_options
from tests.support import ROOT

PRODUCTION_ENV = {
    "DJANGO_ENV": "production",
    "DJANGO_SECRET_KEY": "x" * 20 + "-a-long-random-production-secret-key-0123456789",
    "VISUS_AUDIT_KEY": "audit-chain-key-kept-in-the-hospital-vault-7Qx2",
    "DJANGO_ALLOWED_HOSTS": "visus.hospital.example",
    "DATABASE_URL": "postgres://visus:pw@db.internal:5432/visus",
    "CELERY_BROKER_URL": "redis://redis.internal:6379/0",
    "AWS_STORAGE_BUCKET_NAME": "visus-prod",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "secret-example",
    "AWS_S3_ENDPOINT_URL": "https://s3.hospital.example",
}


def run_django(args: list[str], env_overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run manage.py in a clean environment (nothing inherited from the test run's settings)."""
    env = {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG", "PYTHONPATH"}}
    env["VISUS_DATA_DIR"] = tempfile.mkdtemp(prefix="visus-settings-")
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


class EnvParsingTests(SimpleTestCase):
    def test_booleans_accept_common_words_and_reject_others(self):
        env = Env({"A": "yes", "B": "0", "C": "maybe"}, production=False)
        self.assertTrue(env.bool("A"))
        self.assertFalse(env.bool("B"))
        self.assertTrue(env.bool("MISSING", True))
        with self.assertRaisesMessage(ValueError, "C must be true or false"):
            env.bool("C")

    def test_integers_and_lists_are_parsed(self):
        env = Env({"N": "42", "BAD": "4x", "HOSTS": "a.example, b.example,,"}, production=False)
        self.assertEqual(env.int("N", 1), 42)
        self.assertEqual(env.int("MISSING", 7), 7)
        self.assertEqual(env.list("HOSTS"), ["a.example", "b.example"])
        with self.assertRaisesMessage(ValueError, "BAD must be a whole number"):
            env.int("BAD", 1)

    def test_required_settings_are_only_enforced_in_production(self):
        development = Env({}, production=False)
        self.assertEqual(development.str("DJANGO_SECRET_KEY", "dev", required=True), "dev")
        development.check()
        production = Env({}, production=True)
        production.str("DJANGO_SECRET_KEY", required=True)
        production.str("DATABASE_URL", required=True)
        with self.assertRaisesMessage(MissingSetting, "DJANGO_SECRET_KEY, DATABASE_URL"):
            production.check()

    def test_sqlite_options_allow_a_concurrent_worker(self):
        options = sqlite_options()
        self.assertEqual(options["transaction_mode"], "IMMEDIATE")
        self.assertIn("journal_mode=WAL", options["init_command"])
        self.assertGreaterEqual(options["timeout"], 20)


class SettingsProcessTests(SimpleTestCase):
    """Settings as a real process reads them."""

    def test_embedded_defaults_need_no_server(self):
        code = (
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.DATABASES['default']['ENGINE']); print(s.CELERY_BROKER_URL); "
            "print(s.STORAGES['default']['BACKEND']); print(s.CELERY_RESULT_BACKEND.split(':')[0])"
        )
        result = run_django(["shell", "--no-imports", "-c", code], {})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            result.stdout.split(),
            [
                "django.db.backends.sqlite3",
                "visusfs://",
                "django.core.files.storage.FileSystemStorage",
                "file",
            ],
        )

    def test_production_settings_come_from_the_environment(self):
        code = (
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.DATABASES['default']['ENGINE']); print(s.DATABASES['default']['HOST']); "
            "print(s.CELERY_BROKER_URL); print(s.STORAGES['default']['BACKEND']); "
            "print(s.STORAGES['default']['OPTIONS']['bucket_name']); print(s.DEBUG); print(s.SESSION_COOKIE_SECURE)"
        )
        result = run_django(["shell", "--no-imports", "-c", code], PRODUCTION_ENV)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            result.stdout.split(),
            [
                "django.db.backends.postgresql",
                "db.internal",
                "redis://redis.internal:6379/0",
                "storages.backends.s3.S3Storage",
                "visus-prod",
                "False",
                "True",
            ],
        )

    def test_the_admins_who_get_lockout_alerts_come_from_the_environment(self):
        code = (
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.ADMINS); print(s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_USE_TLS)"
        )
        env = {
            **PRODUCTION_ENV,
            "DJANGO_ADMINS": "ops@hospital.example, security@hospital.example",
            "DJANGO_EMAIL_HOST": "smtp.hospital.example",
            "DJANGO_EMAIL_PORT": "587",
            "DJANGO_EMAIL_USE_TLS": "true",
        }
        result = run_django(["shell", "--no-imports", "-c", code], env)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            result.stdout.splitlines(),
            [
                "[('ops@hospital.example', 'ops@hospital.example'), "
                "('security@hospital.example', 'security@hospital.example')]",
                "smtp.hospital.example 587 True",
            ],
        )

    def test_missing_production_secret_stops_start_up_with_a_clear_message(self):
        env = dict(PRODUCTION_ENV)
        del env["DJANGO_SECRET_KEY"]
        del env["AWS_SECRET_ACCESS_KEY"]
        result = run_django(["check"], env)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("missing required setting(s) DJANGO_SECRET_KEY, AWS_SECRET_ACCESS_KEY", result.stderr)

    def test_weak_secrets_and_wildcard_hosts_stop_production_start_up(self):
        cases = [
            ({"DJANGO_SECRET_KEY": "changeme"}, "DJANGO_SECRET_KEY is weak: it is 8 characters long"),
            ({"DJANGO_SECRET_KEY": "changeme" * 8}, "DJANGO_SECRET_KEY is weak: it is a well-known placeholder"),
            ({"DJANGO_SECRET_KEY": "ab" * 40}, "DJANGO_SECRET_KEY is weak: it repeats too few distinct characters"),
            ({"VISUS_AUDIT_KEY": "short"}, "VISUS_AUDIT_KEY is weak"),
            ({"VISUS_AUDIT_KEY": PRODUCTION_ENV["DJANGO_SECRET_KEY"]}, "VISUS_AUDIT_KEY must differ"),
            ({"DJANGO_ALLOWED_HOSTS": "*"}, "DJANGO_ALLOWED_HOSTS contains the wildcard *"),
            ({"DJANGO_ALLOWED_HOSTS": "visus.hospital.example,*"}, "DJANGO_ALLOWED_HOSTS contains the wildcard *"),
        ]
        for overrides, message in cases:
            with self.subTest(overrides=overrides):
                result = run_django(["check"], {**PRODUCTION_ENV, **overrides})
                self.assertNotEqual(result.returncode, 0)
                self.assertIn("Visus refuses to start in production", result.stderr)
                self.assertIn(message, result.stderr)

    def test_the_audit_key_is_required_in_production(self):
        env = dict(PRODUCTION_ENV)
        del env["VISUS_AUDIT_KEY"]
        result = run_django(["check"], env)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("missing required setting(s) VISUS_AUDIT_KEY", result.stderr)

    def test_check_deploy_is_clean_under_production_settings(self):
        result = run_django(["check", "--deploy", "--fail-level", "WARNING"], PRODUCTION_ENV)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("System check identified no issues", result.stdout)

    def test_unknown_environment_name_is_refused(self):
        result = run_django(["check"], {"DJANGO_ENV": "prod"})
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("DJANGO_ENV must be 'development' or 'production'", result.stderr)
