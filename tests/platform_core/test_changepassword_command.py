from io import StringIO
from unittest import mock

from django.core.management import CommandError, call_command, get_commands
from django.test import TestCase

from platform_core.audit.models import AuditEvent
from tests.support.factories import UserFactory

SECRET = "Console-Secret-Passphrase-7731"


class ChangePasswordCommandTests(TestCase):
    """Django's own changepassword saved a password with no audit event; Visus's replaces it."""

    def setUp(self):
        self.user = UserFactory(email="reader@visus.example")

    def run_command(self, *answers: str, **options: str) -> str:
        out = StringIO()
        with mock.patch("getpass.getpass", side_effect=list(answers)):
            call_command("changepassword", "Reader@Visus.example", stdout=out, stderr=StringIO(), **options)
        return out.getvalue()

    def test_visus_command_replaces_djangos(self):
        self.assertEqual(get_commands()["changepassword"], "platform_core.accounts")

    def test_password_is_set_and_audited_with_the_reason_but_never_the_password(self):
        output = self.run_command(SECRET, SECRET, reason="forgotten, identity checked by phone")
        self.user.refresh_from_db()
        self.assertTrue(self.user.check_password(SECRET))
        self.assertIn("changed", output)
        event = AuditEvent.objects.get(action="user.password_set")
        self.assertEqual(event.reason, "forgotten, identity checked by phone")
        self.assertIsNone(event.actor)
        for row in AuditEvent.objects.values():
            self.assertNotIn(SECRET, str(row))

    def test_reason_is_required(self):
        with self.assertRaises(CommandError):
            call_command("changepassword", self.user.email)

    def test_weak_or_mismatched_passwords_change_nothing(self):
        with self.assertRaisesMessage(CommandError, "unchanged"):
            self.run_command(SECRET, "other", "short", "short", "123", "123", reason="reset")
        self.user.refresh_from_db()
        self.assertFalse(self.user.check_password("short"))
        self.assertFalse(AuditEvent.objects.filter(action="user.password_set").exists())

    def test_unknown_account_is_a_clear_error(self):
        with self.assertRaisesMessage(CommandError, "No account"):
            call_command("changepassword", "nobody@visus.example", reason="x")
