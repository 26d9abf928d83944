"""Throttles: the token endpoint per client address, and failed sign-ins per address (page and API)."""

from django.conf import settings
from django.core.cache import cache
from django.test import TestCase, override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from tests.support.factories import TEST_PASSWORD, UserFactory


class TokenEndpointThrottleTests(TestCase):
    def setUp(self):
        cache.clear()

    def test_rates_are_configured(self):
        self.assertEqual(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["auth_token"], "10/minute")
        self.assertEqual(settings.REST_FRAMEWORK["NUM_PROXIES"], 0)

    def test_the_eleventh_request_in_a_minute_gets_429_in_the_envelope(self):
        client = APIClient()
        url = reverse("api:core:token-obtain")
        for n in range(10):
            response = client.post(url, {"email": f"n{n}@visus.example", "password": "x"}, format="json")
            self.assertEqual(response.status_code, 401, n)
        response = client.post(url, {"email": "n10@visus.example", "password": "x"}, format="json")
        self.assertEqual(response.status_code, 429)
        error = response.json()["error"]
        self.assertEqual((error["status"], error["code"]), (429, "throttled"))
        self.assertIn("Too many sign-in requests", error["message"])
        self.assertIn("Retry-After", response)

    def test_another_address_is_not_throttled(self):
        url = reverse("api:core:token-obtain")
        for n in range(11):
            APIClient().post(url, {"email": f"n{n}@visus.example", "password": "x"}, format="json")
        other = APIClient(REMOTE_ADDR="10.0.0.2")
        self.assertEqual(other.post(url, {"email": "a@visus.example", "password": "x"}, format="json").status_code, 401)

    def test_a_forged_forwarded_for_header_does_not_escape_the_throttle(self):
        url = reverse("api:core:token-obtain")
        data = {"email": "a@visus.example", "password": "x"}
        codes = [APIClient(HTTP_X_FORWARDED_FOR=f"10.1.0.{n}").post(url, data).status_code for n in range(11)]
        self.assertEqual(codes[-1], 429)


@override_settings(VISUS_LOGIN_FAILURES_PER_ADDRESS=3, VISUS_LOCKOUT_THRESHOLD=50, VISUS_ACCOUNT_LOCKOUT_THRESHOLD=50)
class FailedSignInThrottleTests(TestCase):
    def setUp(self):
        cache.clear()
        self.user = UserFactory(email="coord@visus.example")

    def login(self, email, password, **extra):
        return self.client.post(reverse("accounts:login"), {"username": email, "password": password}, **extra)

    def test_failed_page_sign_ins_from_one_address_are_throttled(self):
        for n in range(3):
            self.login(f"guess{n}@visus.example", "nope")
        with self.assertLogs("platform_core.accounts.throttling", "WARNING") as logged:  # refusals are logged
            response = self.login("coord@visus.example", TEST_PASSWORD)
        self.assertIn("Sign-in refused: too many failed sign-ins from 127.0.0.1", logged.output[0])
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "Too many failed sign-ins from your network address")
        self.assertNotIn("_auth_user_id", self.client.session)
        # Another address signs in normally.
        response = self.login("coord@visus.example", TEST_PASSWORD, REMOTE_ADDR="10.0.0.9")
        self.assertRedirects(response, reverse("home"))

    def test_successful_sign_ins_are_not_counted(self):
        for _ in range(4):
            self.assertEqual(self.login("coord@visus.example", TEST_PASSWORD).status_code, 302)
            self.client.post(reverse("accounts:logout"))

    def test_failed_api_sign_ins_count_too(self):
        for n in range(3):
            self.login(f"guess{n}@visus.example", "nope")
        with self.assertLogs("platform_core.accounts.throttling", "WARNING"):
            response = APIClient().post(
                reverse("api:core:token-obtain"),
                {"email": "coord@visus.example", "password": TEST_PASSWORD},
                format="json",
            )
        self.assertEqual(response.status_code, 429)
        self.assertEqual(response.json()["error"]["code"], "throttled")


class CacheOutageTests(TestCase):
    """A cache (Redis) outage must not stop people signing in: the throttles let them through, logged."""

    def test_page_and_token_sign_in_work_when_the_cache_fails(self):
        from unittest import mock

        user = UserFactory(email="ok@visus.example")
        broken = mock.Mock(side_effect=ConnectionError("redis down"))
        with (
            mock.patch.object(cache, "get", broken),
            mock.patch.object(cache, "add", broken),
            mock.patch.object(cache, "set", broken),
            self.assertLogs("platform_core.accounts.throttling", "WARNING"),
        ):
            page = self.client.post(reverse("accounts:login"), {"username": user.email, "password": TEST_PASSWORD})
            self.assertEqual(page.status_code, 302)
            api = APIClient().post(
                reverse("api:core:token-obtain"), {"email": user.email, "password": TEST_PASSWORD}, format="json"
            )
            self.assertEqual(api.status_code, 200, api.content)
            wrong = APIClient().post(
                reverse("api:core:token-obtain"), {"email": user.email, "password": "nope"}, format="json"
            )
            self.assertEqual(wrong.status_code, 401)
