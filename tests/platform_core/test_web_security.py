"""Web security headers: trial data is never cached (issue 13)."""

from django.test import TestCase

from tests.support.factories import TEST_PASSWORD, TrialWorld


class NoStoreTests(TestCase):
    def setUp(self):
        self.w = TrialWorld()

    def test_pages_for_a_signed_in_user_are_no_store(self):
        self.client.force_login(self.w.coord1)
        for url in ("/", f"/trials/{self.w.trial.slug}/", f"/trials/{self.w.trial.slug}/subjects/"):
            with self.subTest(url=url):
                response = self.client.get(url)
                self.assertEqual(response.status_code, 200)
                self.assertEqual(response["Cache-Control"], "no-store, private")
                self.assertIn("Cookie", response["Vary"])

    def test_api_responses_are_no_store_with_a_token_and_on_errors(self):
        token = self.client.post(
            "/api/v1/auth/token/",
            {"email": self.w.coord1.email, "password": TEST_PASSWORD},
            content_type="application/json",
        )
        self.assertEqual(token.status_code, 200, token.content)
        headers = {"HTTP_AUTHORIZATION": f"Token {token.json()['token']}"}
        response = self.client.get("/api/v1/cases/", **headers)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response["Cache-Control"], "no-store, private")
        self.client.logout()
        anonymous = self.client.get("/api/v1/cases/")
        self.assertEqual(anonymous.status_code, 401)
        self.assertEqual(anonymous["Cache-Control"], "no-store, private")
