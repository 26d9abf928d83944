"""Lock-out: attempts counted before the password check, no account enumeration, password change counted."""

import threading
import time
from datetime import timedelta
from unittest import mock

from django.contrib.auth.hashers import make_password
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import TestCase, TransactionTestCase, override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from platform_core.accounts.backends import LockoutModelBackend
from platform_core.accounts.models import User
from platform_core.accounts.services import user_password_change
from platform_core.audit.models import AuditEvent
from tests.support.factories import TEST_PASSWORD, UserFactory

EMAIL = "reader@visus.example"


def events(action, user):
    return AuditEvent.objects.filter(action=action, object_id=str(user.pk)).count()


@override_settings(VISUS_LOCKOUT_THRESHOLD=5, VISUS_ACCOUNT_LOCKOUT_THRESHOLD=5, VISUS_LOCKOUT_MINUTES=15)
class ConcurrentGuessTests(TestCase):
    def setUp(self):
        self.user = UserFactory(email=EMAIL)

    def test_guesses_arriving_during_a_password_check_are_counted_first(self):
        """20 guesses that overlap (each arrives while the first is hashing): only the threshold is checked."""
        checked = []
        real_check = User.check_password

        def slow_check(user, raw_password):
            checked.append(raw_password)
            if len(checked) == 1:
                for n in range(19):
                    LockoutModelBackend().authenticate(None, username=EMAIL, password=f"guess{n}")
            return real_check(user, raw_password)

        with (
            mock.patch.object(User, "check_password", slow_check),
            self.assertLogs("platform_core.accounts.services", "WARNING") as logged,
        ):
            LockoutModelBackend().authenticate(None, username=EMAIL, password="first-guess")
        self.assertTrue(any("locked after 5 failed sign-ins" in line for line in logged.output), logged.output)
        self.assertEqual(len(checked), 5)
        self.user.refresh_from_db()
        self.assertTrue(self.user.is_locked)
        self.assertEqual(self.user.failed_login_count, 5)
        self.assertEqual(events("login.failure", self.user), 5)
        self.assertEqual(events("user.lock", self.user), 1)

    def test_the_right_password_on_the_attempt_that_reaches_the_threshold_signs_in_and_resets(self):
        for n in range(4):
            LockoutModelBackend().authenticate(None, username=EMAIL, password=f"guess{n}")
        self.assertEqual(LockoutModelBackend().authenticate(None, username=EMAIL, password=TEST_PASSWORD), self.user)
        self.user.refresh_from_db()
        self.assertEqual((self.user.failed_login_count, self.user.locked_until), (0, None))
        self.assertEqual(events("user.lock", self.user), 0)

    def test_after_the_lock_expires_one_more_wrong_password_locks_again(self):
        with self.assertLogs("platform_core.accounts.services", "WARNING"):  # locked, then locked again
            for n in range(5):
                LockoutModelBackend().authenticate(None, username=EMAIL, password=f"guess{n}")
            with mock.patch("django.utils.timezone.now", return_value=timezone.now() + timedelta(minutes=16)):
                LockoutModelBackend().authenticate(None, username=EMAIL, password="guess-again")
                self.user.refresh_from_db()
                self.assertTrue(self.user.is_locked)
        self.assertEqual(events("user.lock", self.user), 2)


@override_settings(VISUS_LOCKOUT_THRESHOLD=3, VISUS_ACCOUNT_LOCKOUT_THRESHOLD=3, VISUS_LOCKOUT_MINUTES=15)
class ThreadedGuessTests(TransactionTestCase):
    def test_parallel_guesses_in_threads_check_at_most_the_threshold(self):
        user = UserFactory(email=EMAIL)
        checked = []
        real_check = User.check_password

        def slow_check(u, raw_password):
            checked.append(raw_password)
            time.sleep(0.2)  # a slow hash, so that the threads overlap
            return real_check(u, raw_password)

        def guess(n):
            try:
                LockoutModelBackend().authenticate(None, username=EMAIL, password=f"guess{n}")
            finally:
                connection.close()

        with (
            mock.patch.object(User, "check_password", slow_check),
            self.assertLogs("platform_core.accounts.services", "WARNING"),  # the lock is logged
        ):
            threads = [threading.Thread(target=guess, args=(n,)) for n in range(10)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        self.assertEqual(len(checked), 3)
        user.refresh_from_db()
        self.assertTrue(user.is_locked)
        self.assertEqual(events("user.lock", user), 1)


@override_settings(VISUS_LOCKOUT_THRESHOLD=3, VISUS_ACCOUNT_LOCKOUT_THRESHOLD=3, VISUS_LOCKOUT_MINUTES=15)
class EnumerationTests(TestCase):
    def setUp(self):
        cache.clear()
        self.user = UserFactory(email=EMAIL)
        with self.assertLogs("platform_core.accounts.services", "WARNING"):  # the lock is logged
            for _ in range(3):
                self.client.post(reverse("accounts:login"), {"username": EMAIL, "password": "nope"})
        self.user.refresh_from_db()
        self.assertTrue(self.user.is_locked)

    def page_error(self, email, password):
        cache.clear()  # the per-address limit is tested on its own
        response = self.client.post(reverse("accounts:login"), {"username": email, "password": password})
        return response.context["form"].non_field_errors()

    def api_answer(self, email, password):
        cache.clear()
        response = APIClient().post(
            reverse("api:core:token-obtain"), {"email": email, "password": password}, format="json"
        )
        return response.status_code, response.json()

    def test_page_gives_one_answer_for_locked_unknown_and_wrong(self):
        locked = self.page_error(EMAIL, "nope")
        self.assertEqual(locked, self.page_error("nobody@visus.example", "nope"))
        self.assertEqual(locked, ["That email and password do not match an active account."])
        # Even the right password: a different answer would tell a guesser that the guess was right.
        self.assertEqual(self.page_error(EMAIL.upper(), TEST_PASSWORD), locked)

    def test_api_gives_one_answer_for_locked_unknown_and_wrong(self):
        locked = self.api_answer(" " + EMAIL.upper(), "nope")
        self.assertEqual(locked, self.api_answer("nobody@visus.example", "nope"))
        self.assertEqual(locked[0], 401)
        self.assertEqual(locked[1]["error"]["code"], "invalid_login")
        self.assertEqual(self.api_answer(EMAIL, TEST_PASSWORD), locked)

    def test_the_password_hasher_runs_for_locked_and_unknown_accounts(self):
        for email in (EMAIL, "nobody@visus.example"):
            with mock.patch("platform_core.accounts.backends.make_password", wraps=make_password) as hashed:
                self.assertIsNone(LockoutModelBackend().authenticate(None, username=email, password="nope"))
            hashed.assert_called_once_with("nope")

    def test_a_locked_account_is_not_checked_further(self):
        with mock.patch.object(User, "check_password") as check:
            LockoutModelBackend().authenticate(None, username=EMAIL, password=TEST_PASSWORD)
        check.assert_not_called()
        self.user.refresh_from_db()
        self.assertEqual(self.user.failed_login_count, 3)


@override_settings(VISUS_LOCKOUT_THRESHOLD=3, VISUS_ACCOUNT_LOCKOUT_THRESHOLD=3, VISUS_LOCKOUT_MINUTES=15)
class PasswordChangeLockoutTests(TestCase):
    def setUp(self):
        cache.clear()
        self.user = UserFactory(email=EMAIL)
        self.client.force_login(self.user)

    def change(self, old):
        return self.client.post(
            reverse("accounts:password-change"),
            {"old_password": old, "new_password1": "brand-new-Pass-42", "new_password2": "brand-new-Pass-42"},
        )

    def test_wrong_current_passwords_count_like_failed_sign_ins(self):
        self.assertContains(self.change("wrong-1"), "Your current password was entered incorrectly.")
        self.user.refresh_from_db()
        self.assertEqual(self.user.failed_login_count, 1)
        self.assertEqual(events("login.failure", self.user), 1)

    def test_repeated_wrong_current_passwords_lock_the_account_and_end_the_session(self):
        self.change("wrong-1")
        self.change("wrong-2")
        with self.assertLogs("platform_core.accounts.services", "WARNING"):  # the lock is logged
            response = self.change("wrong-3")
        self.assertRedirects(response, reverse("accounts:login"))
        self.user.refresh_from_db()
        self.assertTrue(self.user.is_locked)
        self.assertEqual(events("user.lock", self.user), 1)
        self.assertNotIn("_auth_user_id", self.client.session)
        self.assertTrue(self.user.check_password(TEST_PASSWORD))

    def test_a_locked_account_cannot_change_its_password_even_with_the_right_one(self):
        User.objects.filter(pk=self.user.pk).update(locked_until=timezone.now() + timedelta(minutes=10))
        self.user.refresh_from_db()
        with self.assertRaises(ValidationError) as caught:
            user_password_change(user=self.user, old_password=TEST_PASSWORD, new_password="brand-new-Pass-42")
        self.assertIn("locked", str(caught.exception))
        self.user.refresh_from_db()
        self.assertTrue(self.user.check_password(TEST_PASSWORD))

    def test_the_right_current_password_resets_the_count(self):
        self.change("wrong-1")
        self.assertRedirects(self.change(TEST_PASSWORD), reverse("home"))
        self.user.refresh_from_db()
        self.assertEqual(self.user.failed_login_count, 0)
