"""API tokens end: idle timeout, maximum age, password change, lock-out and deactivation; one token per sign-in."""

from datetime import timedelta
from unittest import mock

from django.core.cache import cache
from django.db import connection
from django.test import TestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from platform_core.accounts.models import ApiToken, Role, User
from platform_core.accounts.services import user_password_change
from platform_core.audit.models import AuditEvent
from tests.support.factories import TEST_PASSWORD, HospitalFactory, member

EXPIRED = {"error": {"status": 401, "code": "token_expired", "message": "token expired: sign in again"}}


def at(moment):
    return mock.patch("django.utils.timezone.now", return_value=moment)


@override_settings(
    VISUS_IDLE_TIMEOUT_MINUTES=30,
    VISUS_API_TOKEN_MAX_AGE_HOURS=12,
    VISUS_LOCKOUT_THRESHOLD=3,
    VISUS_ACCOUNT_LOCKOUT_THRESHOLD=3,
)
class ApiTokenLifetimeTests(TestCase):
    def setUp(self):
        cache.clear()
        self.user = member(Role.STATISTICIAN, HospitalFactory(code="H01"), email="stats@visus.example")
        self.t0 = timezone.now()
        with at(self.t0):
            self.key = self.sign_in()

    def sign_in(self, password=TEST_PASSWORD):
        response = APIClient().post(
            reverse("api:core:token-obtain"), {"email": "stats@visus.example", "password": password}, format="json"
        )
        return response.json().get("token")

    def me(self, key=None, **headers):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key or self.key}", **headers)
        return client.get(reverse("api:core:me"))

    def test_token_is_refused_after_the_idle_timeout(self):
        with at(self.t0 + timedelta(minutes=29)):
            self.assertEqual(self.me().status_code, 200)
        with at(self.t0 + timedelta(minutes=29 + 31)):
            response = self.me()
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response.json(), EXPIRED)
        self.assertFalse(ApiToken.objects.filter(user=self.user).exists())

    def test_token_in_use_still_ends_at_its_maximum_age(self):
        moment = self.t0
        while moment < self.t0 + timedelta(hours=11, minutes=50):
            moment += timedelta(minutes=20)
            with at(moment):
                self.assertEqual(self.me().status_code, 200, moment - self.t0)
        with at(self.t0 + timedelta(hours=12, minutes=1)):
            response = self.me()
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response.json(), EXPIRED)

    def test_last_use_is_written_at_most_about_once_a_minute(self):
        token = ApiToken.objects.get(user=self.user)
        with at(self.t0 + timedelta(seconds=20)), CaptureQueriesContext(connection) as queries:
            self.assertEqual(self.me().status_code, 200)
        self.assertFalse([q for q in queries if q["sql"].startswith("UPDATE")], "no write within the minute")
        token.refresh_from_db()
        self.assertEqual(token.last_used_at, self.t0)
        with at(self.t0 + timedelta(seconds=90)):
            self.assertEqual(self.me().status_code, 200)
        token.refresh_from_db()
        self.assertEqual(token.last_used_at, self.t0 + timedelta(seconds=90))

    def test_background_requests_do_not_keep_a_token_alive(self):
        for minutes in (10, 20, 29):
            with at(self.t0 + timedelta(minutes=minutes)):
                self.assertEqual(self.me(HTTP_X_VISUS_BACKGROUND="1").status_code, 200)
        with at(self.t0 + timedelta(minutes=31)):
            self.assertEqual(self.me(HTTP_X_VISUS_BACKGROUND="1").status_code, 401)

    def test_each_sign_in_gets_its_own_token(self):
        second = self.sign_in()
        self.assertNotEqual(second, self.key)
        self.assertEqual(self.me(self.key).status_code, 200)
        self.assertEqual(self.me(second).status_code, 200)
        self.assertEqual(AuditEvent.objects.filter(action="api_token.issue").count(), 2)

    def test_password_change_deletes_the_tokens(self):
        user_password_change(user=self.user, old_password=TEST_PASSWORD, new_password="brand-new-Pass-42")
        self.assertEqual(self.me().status_code, 401)
        self.assertFalse(ApiToken.objects.filter(user=self.user).exists())
        self.assertTrue(AuditEvent.objects.filter(action="api_token.revoke", reason="password changed").exists())

    def test_password_set_elsewhere_deletes_the_tokens(self):
        user = User.objects.get(pk=self.user.pk)
        user.set_password("set-by-an-admin-77")
        user.save()
        self.assertEqual(self.me().status_code, 401)

    def test_lock_out_deletes_the_tokens(self):
        with self.assertLogs("platform_core.accounts.services", "WARNING"):  # the lock is logged
            for _ in range(3):
                self.sign_in(password="wrong")
        self.user.refresh_from_db()
        self.assertTrue(self.user.is_locked)
        self.assertFalse(ApiToken.objects.filter(user=self.user).exists())
        self.assertEqual(self.me().status_code, 401)

    def test_a_locked_account_is_refused_even_when_locked_behind_the_models_back(self):
        User.objects.filter(pk=self.user.pk).update(locked_until=timezone.now() + timedelta(minutes=15))
        response = self.me()
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response.json(), EXPIRED)
        self.assertFalse(ApiToken.objects.filter(user=self.user).exists())

    def test_deactivation_deletes_the_tokens(self):
        user = User.objects.get(pk=self.user.pk)
        user.is_active = False
        user.save()
        self.assertFalse(ApiToken.objects.filter(user=self.user).exists())
        self.assertEqual(self.me().status_code, 401)

    def test_an_unknown_token_is_refused_in_the_envelope(self):
        response = self.me("0" * 40)
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response.json()["error"]["code"], "invalid_token")
