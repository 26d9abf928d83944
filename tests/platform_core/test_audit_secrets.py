"""Every service that takes a secret leaves no trace of it in the audit trail, the logs, mail or the page."""

import logging

from django.core import mail
from django.core.cache import cache
from django.test import TestCase, override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from platform_core.accounts.models import User
from platform_core.accounts.services import (
    api_token_digest,
    api_token_issue,
    api_tokens_revoke,
    user_create,
    user_password_change,
)
from platform_core.audit.models import AuditEvent
from tests.support.factories import TEST_PASSWORD, UserFactory


class _Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # factory_boy logs the test fixtures' own password at DEBUG; that is the test's doing, not the product's.
        if not record.name.startswith("factory"):
            self.lines.append(self.format(record))


# ADMINS set, so that the lock-out alert is really mailed and the mail is searched too.
@override_settings(VISUS_LOCKOUT_THRESHOLD=3, VISUS_ACCOUNT_LOCKOUT_THRESHOLD=3, ADMINS=[("Ops", "ops@visus.example")])
class NoSecretInTheTrailTests(TestCase):
    def setUp(self):
        cache.clear()  # sign-in throttles count per address
        self.handler = _Everything()
        self.handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s"))
        # Every record of every level goes to this handler alone (the console stays quiet).
        root = logging.getLogger()
        self.old = root.level, root.handlers[:]
        root.handlers = [self.handler]
        root.setLevel(logging.DEBUG)

    def tearDown(self):
        root = logging.getLogger()
        root.setLevel(self.old[0])
        root.handlers = self.old[1]

    def assert_no_trace(self, *secrets: str) -> None:
        events = list(AuditEvent.objects.values_list())
        self.assertTrue(events, "the services recorded nothing: the test would prove nothing")
        stored = " ".join(str(row) for row in events)
        logged = "\n".join(self.handler.lines)
        mailed = " ".join(f"{m.subject} {m.body}" for m in mail.outbox)
        for secret in secrets:
            self.assertNotIn(secret, stored)
            self.assertNotIn(secret, logged)
            self.assertNotIn(secret, mailed)

    def test_creating_a_user_with_a_password(self):
        secret = "Create-Secret-2026-xyz"
        user = user_create(actor=None, email="new@visus.example", full_name="New Person", password=secret)
        self.assertTrue(AuditEvent.objects.filter(action="user.create", object_id=str(user.pk)).exists())
        self.assert_no_trace(secret, user.password)

    def test_changing_a_password(self):
        user = UserFactory()
        secret = "Changed-Secret-2026-xyz"
        api_token_issue(user=user)
        user_password_change(user=user, old_password=TEST_PASSWORD, new_password=secret)
        user.refresh_from_db()
        self.assertTrue(AuditEvent.objects.filter(action="user.password_change").exists())
        self.assertTrue(AuditEvent.objects.filter(action="api_token.revoke").exists())
        self.assert_no_trace(secret, TEST_PASSWORD, user.password)

    def test_wrong_current_passwords_until_the_account_locks(self):
        user = UserFactory()
        guesses = [f"Wrong-Guess-{n}-xyz" for n in range(3)]
        for guess in guesses:
            with self.assertRaises(Exception):  # noqa: B017 - a ValidationError, then the lock
                user_password_change(user=user, old_password=guess, new_password="Never-Set-2026-xyz")
        self.assertTrue(AuditEvent.objects.filter(action="user.lock").exists())
        self.assert_no_trace(*guesses, "Never-Set-2026-xyz", TEST_PASSWORD)

    def test_issuing_and_revoking_api_tokens(self):
        user = UserFactory()
        key = api_token_issue(user=user)
        api_tokens_revoke(user=user, reason="account deactivated")
        self.assertEqual(AuditEvent.objects.filter(action__startswith="api_token.").count(), 2)
        self.assert_no_trace(key, api_token_digest(key))

    def test_signing_in_and_failing_to_sign_in_on_the_page(self):
        user = UserFactory(email="person@visus.example")
        guesses = [f"Page-Guess-{n}-xyz" for n in range(3)]
        for guess in guesses:
            response = self.client.post(reverse("accounts:login"), {"username": user.email, "password": guess})
            self.assertNotIn(guess, response.content.decode())
        self.assertEqual(AuditEvent.objects.filter(action="login.failure").count(), 3)
        self.assertTrue(AuditEvent.objects.filter(action="user.lock").exists())
        self.assertEqual([m.subject for m in mail.outbox], ["[Django] Visus: account locked"])
        self.assert_no_trace(*guesses)

    def test_getting_an_api_token_and_failing_to(self):
        user = UserFactory(email="script@visus.example")
        client = APIClient()
        url = reverse("api:core:token-obtain")
        wrong = "Api-Guess-xyz-2026"
        response = client.post(url, {"email": user.email, "password": wrong}, format="json")
        self.assertEqual(response.status_code, 401)
        self.assertNotIn(wrong, response.content.decode())
        response = client.post(url, {"email": user.email, "password": TEST_PASSWORD}, format="json")
        key = response.json()["token"]
        self.assertTrue(AuditEvent.objects.filter(action="login.failure").exists())
        self.assertTrue(AuditEvent.objects.filter(action="api_token.issue").exists())
        self.assert_no_trace(wrong, TEST_PASSWORD, key, api_token_digest(key))
        self.assertTrue(User.objects.filter(pk=user.pk).exists())
