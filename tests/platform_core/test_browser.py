"""The real login page in headless Chromium."""

from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.test import tag
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from platform_core.accounts.models import Role
from tests.support import BrowserTestCase
from tests.support.factories import TEST_PASSWORD, HospitalFactory, member


@tag("browser")
class LoginInBrowserTests(BrowserTestCase, StaticLiveServerTestCase):
    def setUp(self):
        self.browser.delete_all_cookies()
        hospital = HospitalFactory(code="H01", name="Northfield Eye Hospital")
        member(Role.COORDINATOR, hospital, email="chris@visus.example", full_name="Chris Coordinator")

    def test_coordinator_signs_in_through_the_login_page_and_out_again(self):
        self.sign_in("chris@visus.example", TEST_PASSWORD)
        wait = WebDriverWait(self.browser, 10)
        name = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid=user-name]")))
        self.assertEqual(name.text, "Chris Coordinator")
        table = self.browser.find_element(By.CSS_SELECTOR, "[data-testid=memberships]").text
        self.assertIn("Northfield Eye Hospital", table)
        self.assertIn("Coordinator", table)
        # The stylesheet is served locally and applied (header coloured by visus.css).
        header_bg = self.browser.find_element(By.CSS_SELECTOR, ".site-header").value_of_css_property("background-color")
        self.assertIn("11, 93, 122", header_bg)
        self.submit("Sign out")
        self.wait_for("input[name=username]")
        self.assertIn("/accounts/login/", self.browser.current_url)

    def test_staff_reach_the_admin_through_the_visus_login_page(self):
        staff = member(Role.TRIAL_MANAGER, HospitalFactory(code="H02"), email="sam@visus.example", full_name="Sam")
        staff.is_staff = True
        staff.save(update_fields=["is_staff"])
        self.browser.get(f"{self.live_server_url}/admin/")
        self.wait_for("input[name=username]")
        self.assertIn("/accounts/login/", self.browser.current_url)
        self.browser.find_element(By.NAME, "username").send_keys("sam@visus.example")
        self.browser.find_element(By.NAME, "password").send_keys(TEST_PASSWORD)
        self.submit("Sign in")
        self.wait_for("#site-name")
        self.assertTrue(self.browser.current_url.endswith("/admin/"))

    def test_wrong_password_shows_a_clear_error_in_the_page(self):
        self.sign_in("chris@visus.example", "not-my-password")
        error = WebDriverWait(self.browser, 10).until(
            EC.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid=login-error]"))
        )
        self.assertIn("do not match an active account", error.text)
