import re

from django.core.cache import cache
from django.test import TestCase
from django.urls import reverse
from rest_framework.test import APIClient

from platform_core.accounts.models import ApiToken, Role
from platform_core.accounts.services import api_token_digest
from platform_core.audit.services import audit_record
from tests.support.factories import TEST_PASSWORD, HospitalFactory, UserFactory, member


class SchemaTests(TestCase):
    def setUp(self):
        self.client = APIClient()
        self.client.force_authenticate(UserFactory())

    def test_schema_is_openapi_and_lists_the_v1_endpoints(self):
        response = self.client.get(reverse("api-schema"), {"format": "json"})
        self.assertEqual(response.status_code, 200)
        schema = response.json()
        self.assertTrue(schema["openapi"].startswith("3."))
        for path in ("/api/v1/me/", "/api/v1/hospitals/", "/api/v1/auth/token/", "/api/v1/audit-events/"):
            self.assertIn(path, schema["paths"])

    def test_docs_page_serves_its_assets_locally(self):
        response = self.client.get(reverse("api-docs"))
        self.assertEqual(response.status_code, 200)
        html = response.content.decode()
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        self.assertTrue(any("swagger-ui" in asset for asset in assets), assets)
        for asset in assets:
            self.assertFalse(asset.startswith(("http:", "https:", "//")), f"external asset {asset}")
            self.assertEqual(self.client.get(asset).status_code, 200, asset)

    def test_schema_needs_authentication(self):
        response = APIClient().get(reverse("api-schema"))
        self.assertIn(response.status_code, (401, 403))


class ErrorFormatTests(TestCase):
    def setUp(self):
        cache.clear()

    def test_validation_errors_share_one_format(self):
        response = APIClient().post(reverse("api:core:token-obtain"), {"email": "not-an-email"}, format="json")
        self.assertEqual(response.status_code, 400)
        error = response.json()["error"]
        self.assertEqual(error["code"], "validation_error")
        self.assertEqual(error["status"], 400)
        self.assertIn("email", error["fields"])
        self.assertIn("password", error["fields"])
        self.assertTrue(error["message"])

    def test_application_errors_share_the_format(self):
        UserFactory(email="x@visus.example")
        response = APIClient().post(
            reverse("api:core:token-obtain"), {"email": "x@visus.example", "password": "wrong"}, format="json"
        )
        self.assertEqual(response.status_code, 401)
        self.assertEqual(
            response.json(),
            {
                "error": {
                    "status": 401,
                    "code": "invalid_login",
                    "message": "That email and password do not match an active account.",
                }
            },
        )

    def test_authentication_errors_share_the_format(self):
        response = APIClient().get(reverse("api:core:me"))
        self.assertIn(response.status_code, (401, 403))
        self.assertEqual(response.json()["error"]["code"], "not_authenticated")


class TokenAuthTests(TestCase):
    def setUp(self):
        cache.clear()

    def test_script_gets_a_token_and_uses_it(self):
        hospital = HospitalFactory(code="H01")
        user = member(Role.STATISTICIAN, hospital, email="stats@visus.example")
        response = APIClient().post(
            reverse("api:core:token-obtain"), {"email": "stats@visus.example", "password": TEST_PASSWORD}, format="json"
        )
        self.assertEqual(response.status_code, 200)
        token = response.json()["token"]
        # Only a digest of the key is stored.
        self.assertEqual(ApiToken.objects.get(user=user).key_digest, api_token_digest(token))
        self.assertFalse(ApiToken.objects.filter(key_digest=token).exists())
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        me = client.get(reverse("api:core:me")).json()
        self.assertEqual(me["email"], "stats@visus.example")
        self.assertEqual(me["memberships"], [{"hospital": "H01", "role": "statistician"}])

    def test_a_wrong_token_is_refused(self):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION="Token deadbeef")
        self.assertEqual(client.get(reverse("api:core:me")).status_code, 401)


class HospitalListApiTests(TestCase):
    def setUp(self):
        self.h1 = HospitalFactory(code="H01")
        self.h2 = HospitalFactory(code="H02")

    def test_coordinator_lists_only_their_hospital(self):
        client = APIClient()
        client.force_authenticate(member(Role.COORDINATOR, self.h1))
        codes = [h["code"] for h in client.get(reverse("api:core:hospital-list")).json()["results"]]
        self.assertEqual(codes, ["H01"])

    def test_user_without_membership_is_forbidden(self):
        client = APIClient()
        client.force_authenticate(UserFactory())
        self.assertEqual(client.get(reverse("api:core:hospital-list")).status_code, 403)

    def test_query_count_is_constant(self):
        user = member(Role.MONITOR, self.h1)
        client = APIClient()
        client.force_authenticate(user)
        with self.assertNumQueries(3):
            client.get(reverse("api:core:hospital-list"))
        for n in range(3, 30):
            from platform_core.accounts.models import Membership

            Membership.objects.create(user=user, hospital=HospitalFactory(code=f"H{n:02d}"), role=Role.MONITOR)
        with self.assertNumQueries(3):
            response = client.get(reverse("api:core:hospital-list"))
        self.assertEqual(response.json()["count"], 28)


class AuditEventListApiTests(TestCase):
    def setUp(self):
        self.h1 = HospitalFactory(code="H01")
        self.h2 = HospitalFactory(code="H02")
        for n in range(3):
            audit_record(actor=None, action="test.h1", hospital_code="H01", object_id=str(n))
        audit_record(actor=None, action="test.h2", hospital_code="H02")

    def test_monitor_sees_events_of_their_sites_only(self):
        client = APIClient()
        client.force_authenticate(member(Role.MONITOR, self.h1))
        actions = {e["action"] for e in client.get(reverse("api:core:audit-event-list")).json()["results"]}
        self.assertEqual(actions, {"test.h1"})

    def test_roles_other_than_monitor_and_manager_are_forbidden(self):
        for role in (Role.COORDINATOR, Role.READER, Role.STATISTICIAN):
            client = APIClient()
            client.force_authenticate(member(role, self.h1))
            response = client.get(reverse("api:core:audit-event-list"))
            self.assertEqual(response.status_code, 403, role)
            self.assertEqual(response.json()["error"]["code"], "permission_denied")

    def test_query_count_is_constant(self):
        client = APIClient()
        client.force_authenticate(member(Role.TRIAL_MANAGER, self.h1))
        # Roles, the account holders of the reviewer's hospitals (their account events), the count, the page.
        with self.assertNumQueries(4):
            client.get(reverse("api:core:audit-event-list"))
        for n in range(40):
            audit_record(actor=None, action="test.more", hospital_code="H01", object_id=str(n))
        with self.assertNumQueries(4):
            response = client.get(reverse("api:core:audit-event-list"))
        self.assertEqual(response.json()["count"], 43)
