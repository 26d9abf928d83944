"""Background polls (X-Visus-Background: 1) are held to the idle timeout but do not count as activity."""

from datetime import timedelta
from pathlib import Path
from unittest import mock

from django.conf import settings
from django.core.cache import cache
from django.test import TestCase, override_settings
from django.urls import reverse
from django.utils import timezone

from platform_core.accounts.models import Role
from tests.support.factories import TEST_PASSWORD, HospitalFactory, member


@override_settings(VISUS_IDLE_TIMEOUT_MINUTES=30)
class BackgroundRequestTests(TestCase):
    def setUp(self):
        cache.clear()
        self.user = member(Role.READER, HospitalFactory(code="H01"))
        self.t0 = timezone.now()
        with mock.patch("django.utils.timezone.now", return_value=self.t0):
            self.client.post(reverse("accounts:login"), {"username": self.user.email, "password": TEST_PASSWORD})

    def get(self, minutes, url, **headers):
        with mock.patch("django.utils.timezone.now", return_value=self.t0 + timedelta(minutes=minutes)):
            return self.client.get(url, **headers)

    def test_background_polls_do_not_keep_the_session_alive(self):
        for minutes in (10, 20, 29):
            self.assertEqual(self.get(minutes, reverse("api:core:me"), HTTP_X_VISUS_BACKGROUND="1").status_code, 200)
        response = self.get(31, reverse("home"))
        self.assertRedirects(response, f"{reverse('accounts:login')}?next=/", fetch_redirect_response=False)

    def test_background_polls_are_held_to_the_timeout(self):
        response = self.get(31, reverse("api:core:me"), HTTP_X_VISUS_BACKGROUND="1")
        self.assertEqual(response.status_code, 401)
        self.assertNotIn("_auth_user_id", self.client.session)
        # The page reloads on the 401; the sign-in page says why.
        self.assertContains(self.client.get(reverse("accounts:login")), "signed out after 30 minutes of inactivity")

    def test_requests_without_the_header_are_activity(self):
        self.assertEqual(self.get(20, reverse("api:core:me")).status_code, 200)
        self.assertEqual(self.get(40, reverse("home")).status_code, 200)

    def test_the_inference_page_script_marks_its_polls(self):
        script = (Path(settings.BASE_DIR) / "static" / "js" / "inference.js").read_text()
        self.assertIn('"X-Visus-Background": "1"', script)
