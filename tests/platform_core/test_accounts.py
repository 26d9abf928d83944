import contextlib
from datetime import timedelta
from unittest import mock

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.cache import cache
from django.test import TestCase, override_settings
from django.urls import reverse
from django.utils import timezone

from platform_core.accounts.models import Hospital, Membership, Role, User
from platform_core.accounts.selectors import hospitals_for, scope_to_memberships
from platform_core.accounts.services import user_create
from platform_core.audit.models import AuditEvent
from tests.support.factories import TEST_PASSWORD, HospitalFactory, MembershipFactory, UserFactory, member

LOCK_LOGGER = "platform_core.accounts.services"  # logs each lock (a warning an operator should see)

ARGON2_FIRST = ["django.contrib.auth.hashers.Argon2PasswordHasher", "django.contrib.auth.hashers.PBKDF2PasswordHasher"]


class PasswordHashingTests(TestCase):
    @override_settings(PASSWORD_HASHERS=ARGON2_FIRST)
    def test_new_passwords_are_hashed_with_argon2(self):
        user = user_create(
            actor=None, email="New.Person@Visus.example", full_name="New Person", password="a-Long-pass-123"
        )
        self.assertTrue(user.password.startswith("argon2$"))
        self.assertEqual(user.email, "new.person@visus.example")
        self.assertTrue(user.check_password("a-Long-pass-123"))

    def test_settings_use_argon2_first(self):
        from platform_core import settings as project_settings

        self.assertEqual(project_settings.PASSWORD_HASHERS[0], "django.contrib.auth.hashers.Argon2PasswordHasher")

    def test_weak_passwords_are_refused(self):
        from django.core.exceptions import ValidationError

        with self.assertRaises(ValidationError):
            user_create(actor=None, email="weak@visus.example", full_name="Weak", password="12345678")
        self.assertFalse(User.objects.filter(email="weak@visus.example").exists())


class LoginTests(TestCase):
    def setUp(self):
        cache.clear()
        self.hospital = HospitalFactory(code="H01")
        self.user = member(Role.COORDINATOR, self.hospital, email="coord@visus.example", full_name="Chris Coord")

    def login(self, password, email="coord@visus.example"):
        return self.client.post(reverse("accounts:login"), {"username": email, "password": password})

    def test_login_page_renders_a_form(self):
        response = self.client.get(reverse("accounts:login"))
        self.assertContains(response, 'name="username"')
        self.assertContains(response, 'type="password"')

    def test_user_signs_in_with_email_and_password_and_sees_their_site(self):
        response = self.login(TEST_PASSWORD)
        self.assertRedirects(response, reverse("home"))
        home = self.client.get(reverse("home"))
        self.assertContains(home, "Chris Coord")
        self.assertContains(home, "H01")
        self.assertTrue(AuditEvent.objects.filter(action="login.success", object_id=str(self.user.pk)).exists())

    def test_email_is_case_insensitive(self):
        self.assertRedirects(self.login(TEST_PASSWORD, email="COORD@visus.example"), reverse("home"))

    def test_wrong_password_gives_a_clear_error(self):
        response = self.login("wrong")
        self.assertContains(response, "That email and password do not match an active account.")
        self.user.refresh_from_db()
        self.assertEqual(self.user.failed_login_count, 1)

    def test_pages_require_sign_in(self):
        response = self.client.get(reverse("home"))
        self.assertRedirects(response, f"{reverse('accounts:login')}?next=/")

    def test_logout_is_post_only_and_ends_the_session(self):
        self.client.force_login(self.user)
        self.assertEqual(self.client.get(reverse("accounts:logout")).status_code, 405)
        self.client.post(reverse("accounts:logout"))
        self.assertRedirects(self.client.get(reverse("home")), f"{reverse('accounts:login')}?next=/")


@override_settings(VISUS_LOCKOUT_THRESHOLD=3, VISUS_ACCOUNT_LOCKOUT_THRESHOLD=3, VISUS_LOCKOUT_MINUTES=15)
class LockoutTests(TestCase):
    def setUp(self):
        cache.clear()
        self.user = UserFactory(email="reader@visus.example")

    def fail_login(self, times):
        """Wrong passwords; the one that reaches the threshold locks the account, which is logged."""
        locks = times >= settings.VISUS_LOCKOUT_THRESHOLD
        with self.assertLogs(LOCK_LOGGER, "WARNING") if locks else contextlib.nullcontext():
            for _ in range(times):
                self.client.post(reverse("accounts:login"), {"username": "reader@visus.example", "password": "nope"})

    def test_account_locks_after_repeated_failures_even_with_the_right_password(self):
        self.fail_login(3)
        self.user.refresh_from_db()
        self.assertTrue(self.user.is_locked)
        response = self.client.post(
            reverse("accounts:login"), {"username": "reader@visus.example", "password": TEST_PASSWORD}
        )
        # The same answer as a wrong password: the page does not tell which accounts exist or are locked.
        self.assertContains(response, "That email and password do not match an active account.")
        self.assertNotContains(response, "is locked")
        self.assertNotIn("_auth_user_id", self.client.session)
        self.assertEqual(AuditEvent.objects.filter(action="user.lock", object_id=str(self.user.pk)).count(), 1)

    def test_failures_below_the_threshold_do_not_lock_and_success_resets_the_count(self):
        self.fail_login(2)
        response = self.client.post(
            reverse("accounts:login"), {"username": "reader@visus.example", "password": TEST_PASSWORD}
        )
        self.assertRedirects(response, reverse("home"))
        self.user.refresh_from_db()
        self.assertEqual(self.user.failed_login_count, 0)
        self.assertFalse(self.user.is_locked)

    def test_lock_expires_after_the_lockout_period(self):
        self.fail_login(3)
        later = timezone.now() + timedelta(minutes=16)
        with mock.patch("django.utils.timezone.now", return_value=later):
            response = self.client.post(
                reverse("accounts:login"), {"username": "reader@visus.example", "password": TEST_PASSWORD}
            )
        self.assertEqual(response.status_code, 302)

    def test_locked_account_cannot_get_an_api_token(self):
        self.fail_login(3)
        response = self.client.post(
            reverse("api:core:token-obtain"),
            {"email": "reader@visus.example", "password": TEST_PASSWORD},
            content_type="application/json",
        )
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response.json()["error"]["code"], "invalid_login")


@override_settings(VISUS_IDLE_TIMEOUT_MINUTES=30)
class IdleTimeoutTests(TestCase):
    def setUp(self):
        cache.clear()
        self.user = member(Role.READER, HospitalFactory(code="H01"))
        self.client.post(reverse("accounts:login"), {"username": self.user.email, "password": TEST_PASSWORD})

    def test_activity_within_the_timeout_keeps_the_session(self):
        later = timezone.now() + timedelta(minutes=29)
        with mock.patch("django.utils.timezone.now", return_value=later):
            self.assertEqual(self.client.get(reverse("home")).status_code, 200)

    def test_session_ends_after_thirty_idle_minutes(self):
        self.assertEqual(self.client.get(reverse("home")).status_code, 200)
        later = timezone.now() + timedelta(minutes=31)
        with mock.patch("django.utils.timezone.now", return_value=later):
            response = self.client.get(reverse("home"))
        self.assertRedirects(response, f"{reverse('accounts:login')}?next=/", fetch_redirect_response=False)
        self.assertNotIn("_auth_user_id", self.client.session)
        follow = self.client.get(response.url)
        self.assertContains(follow, "signed out after 30 minutes of inactivity")

    def test_api_session_is_ended_by_the_idle_timeout_too(self):
        later = timezone.now() + timedelta(minutes=31)
        with mock.patch("django.utils.timezone.now", return_value=later):
            response = self.client.get(reverse("api:core:me"))
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response.json()["error"]["code"], "not_authenticated")

    def test_sessions_end_when_the_browser_closes(self):
        self.assertTrue(settings.SESSION_EXPIRE_AT_BROWSER_CLOSE)
        self.assertGreater(settings.SESSION_COOKIE_AGE, settings.VISUS_IDLE_TIMEOUT_MINUTES * 60)


class PasswordChangeTests(TestCase):
    def setUp(self):
        self.user = UserFactory()
        self.client.force_login(self.user)

    def test_password_change_requires_the_current_password(self):
        response = self.client.post(
            reverse("accounts:password-change"),
            {"old_password": "wrong", "new_password1": "brand-new-Pass-42", "new_password2": "brand-new-Pass-42"},
        )
        self.assertContains(response, "Your current password was entered incorrectly.")
        self.user.refresh_from_db()
        self.assertTrue(self.user.check_password(TEST_PASSWORD))

    def test_password_change_rejects_weak_and_mismatched_passwords(self):
        response = self.client.post(
            reverse("accounts:password-change"),
            {"old_password": TEST_PASSWORD, "new_password1": "short", "new_password2": "short"},
        )
        self.assertContains(response, "This password is too short")
        response = self.client.post(
            reverse("accounts:password-change"),
            {"old_password": TEST_PASSWORD, "new_password1": "brand-new-Pass-42", "new_password2": "other-Pass-42"},
        )
        self.assertContains(response, "The two new passwords do not match.")

    def test_password_change_keeps_the_user_signed_in_and_is_audited(self):
        response = self.client.post(
            reverse("accounts:password-change"),
            {"old_password": TEST_PASSWORD, "new_password1": "brand-new-Pass-42", "new_password2": "brand-new-Pass-42"},
        )
        self.assertRedirects(response, reverse("home"))
        self.user.refresh_from_db()
        self.assertTrue(self.user.check_password("brand-new-Pass-42"))
        self.assertEqual(self.client.get(reverse("home")).status_code, 200)
        event = AuditEvent.objects.get(action="user.password_change")
        self.assertEqual(event.changes, {})
        self.assertNotIn("brand-new", str(event.changes) + event.reason)


class MembershipScopingTests(TestCase):
    def setUp(self):
        self.h1 = HospitalFactory(code="H01")
        self.h2 = HospitalFactory(code="H02")
        self.h3 = HospitalFactory(code="H03")

    def test_coordinator_sees_only_their_hospital(self):
        coordinator = member(Role.COORDINATOR, self.h1)
        self.assertEqual(list(hospitals_for(coordinator)), [self.h1])

    def test_scoping_follows_a_relation_path_and_roles(self):
        user = member(Role.COORDINATOR, self.h1)
        MembershipFactory(user=user, hospital=self.h2, role=Role.READER)
        memberships = Membership.objects.all()
        self.assertEqual(
            {m.hospital.code for m in scope_to_memberships(memberships, user=user, hospital_path="hospital")},
            {"H01", "H02"},
        )
        scoped = scope_to_memberships(Hospital.objects.all(), user=user, hospital_path="id", roles=[Role.READER])
        self.assertEqual(list(scoped), [self.h2])

    def test_inactive_membership_grants_nothing(self):
        user = UserFactory()
        MembershipFactory(user=user, hospital=self.h1, is_active=False)
        self.assertEqual(list(hospitals_for(user)), [])

    def test_superuser_without_membership_sees_no_site_data(self):
        admin = UserFactory(is_superuser=True, is_staff=True)
        self.assertEqual(list(hospitals_for(admin)), [])

    def test_anonymous_and_inactive_users_see_nothing(self):
        from django.contrib.auth.models import AnonymousUser

        self.assertEqual(list(hospitals_for(AnonymousUser())), [])
        user = member(Role.COORDINATOR, self.h1)
        user.is_active = False
        self.assertEqual(list(hospitals_for(user)), [])


class RoleNavigationTests(TestCase):
    def test_monitor_sees_audit_trail_in_navigation_and_coordinator_does_not(self):
        hospital = HospitalFactory(code="H01")
        monitor = member(Role.MONITOR, hospital)
        coordinator = member(Role.COORDINATOR, hospital)
        self.client.force_login(monitor)
        self.assertContains(self.client.get(reverse("home")), 'href="/audit/"')
        self.client.force_login(coordinator)
        self.assertNotContains(self.client.get(reverse("home")), 'href="/audit/"')
        self.assertEqual(self.client.get(reverse("audit:event-list")).status_code, 403)

    def test_base_layout_loads_only_local_assets(self):
        user = UserFactory()
        user.password = make_password(TEST_PASSWORD)
        self.client.force_login(user)
        html = self.client.get(reverse("home")).content.decode()
        self.assertNotRegex(html, r'(src|href)="(https?:)?//')
