"""People pages in headless Chromium: invite -> accept -> sign in; grant and revoke a role; unlock an account."""

from __future__ import annotations

import re
from datetime import timedelta

from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.core import mail
from django.test import tag
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from platform_core.accounts.models import Membership, Role, User
from tests.support import BrowserTestCase
from tests.support.factories import TEST_PASSWORD, HospitalFactory, member

NEW_PASSWORD = "lantern-orchard-velvet-42"


@tag("browser")
class PeopleInBrowserTests(BrowserTestCase, StaticLiveServerTestCase):
    def setUp(self):
        self.browser.delete_all_cookies()
        self.h1 = HospitalFactory(code="H01", name="Northfield Eye Hospital")
        self.manager = member(Role.TRIAL_MANAGER, self.h1, email="mia@visus.example", full_name="Mia Manager")
        self.coord = member(Role.COORDINATOR, self.h1, email="cora@visus.example", full_name="Cora Coordinator")

    def fill(self, name: str, value: str) -> None:
        element = self.browser.find_element(By.NAME, name)
        element.clear()
        element.send_keys(value)

    def choose(self, name: str, label: str) -> None:
        Select(self.browser.find_element(By.NAME, name)).select_by_visible_text(label)

    def message(self) -> str:
        return self.wait_for(".messages").text

    def test_a_manager_invites_someone_who_accepts_and_signs_in(self):
        self.sign_in("mia@visus.example", TEST_PASSWORD)
        self.follow("People")
        self.follow("Invite someone")
        self.fill("email", "nora@visus.example")
        self.fill("full_name", "Nora Reader")
        self.choose("role", "Reader")  # the only hospital is chosen already
        self.submit("Send invitation")
        self.assertIn("Invitation sent to nora@visus.example", self.message())
        self.assertIn("Reader at H01", self.browser.find_element(By.CSS_SELECTOR, "[data-testid=invitations]").text)
        self.assertEqual(len(mail.outbox), 1)
        link = re.search(r"http://\S+/accounts/invitations/\S+/", mail.outbox[0].body).group(0)

        self.browser.delete_all_cookies()
        self.browser.get(link)
        self.assertIn("Reader", self.wait_for("main").text)
        self.fill("password1", "short")
        self.fill("password2", "short")
        self.submit("Create my account")
        self.assertIn("too short", self.wait_for("main").text)
        self.fill("password1", NEW_PASSWORD)
        self.fill("password2", NEW_PASSWORD)
        self.submit("Create my account")
        self.assertIn("Your account is ready", self.message())

        self.sign_in("nora@visus.example", NEW_PASSWORD)
        self.assertEqual(self.wait_for("[data-testid=user-name]").text, "Nora Reader")
        self.assertIn("Reader", self.browser.find_element(By.CSS_SELECTOR, "[data-testid=memberships]").text)
        self.browser.delete_all_cookies()
        self.browser.get(link)
        self.assertIn("already been used", self.wait_for("[data-testid=invitation-problem]").text)

    def test_a_manager_grants_and_revokes_a_role_with_a_reason(self):
        self.sign_in("mia@visus.example", TEST_PASSWORD)
        self.follow("People")
        self.follow("Cora Coordinator")
        self.choose("grant-role", "Monitor")
        self.submit("Grant role")
        self.assertIn("This field is required", self.wait_for(".field.has-error").text)
        self.choose("grant-role", "Monitor")
        self.fill("grant-reason", "monitors the H01 data")
        self.submit("Grant role")
        self.assertIn("Cora Coordinator is now Monitor at H01", self.message())
        membership = Membership.objects.get(user=self.coord, role=Role.MONITOR)
        self.browser.find_element(By.ID, f"revoke-{membership.pk}").send_keys("monitoring ended")
        self.submit("Revoke Monitor at H01")
        self.assertIn("Monitor at H01 revoked", self.message())
        self.assertFalse(Membership.objects.get(pk=membership.pk).is_active)

    def test_a_manager_unlocks_a_locked_account_and_its_owner_signs_in(self):
        User.objects.filter(pk=self.coord.pk).update(
            failed_login_count=5, locked_until=timezone.now() + timedelta(minutes=15)
        )
        self.sign_in("cora@visus.example", TEST_PASSWORD)
        self.assertIn("do not match", self.wait_for("[data-testid=login-error]").text)
        # The page's promise, which the manager keeps below.
        self.assertIn("your trial manager can unlock sooner", self.browser.find_element(By.CSS_SELECTOR, ".hint").text)
        self.sign_in("mia@visus.example", TEST_PASSWORD)
        self.follow("People")
        self.assertIn("Locked", self.browser.find_element(By.CSS_SELECTOR, "[data-testid=people]").text)
        self.follow("Cora Coordinator")
        self.fill("unlock-reason", "identity checked by phone")
        self.submit("Unlock account")
        self.assertIn("account is unlocked", self.message())
        self.sign_in("cora@visus.example", TEST_PASSWORD)
        self.assertEqual(self.wait_for("[data-testid=user-name]").text, "Cora Coordinator")
