"""The API description: signed-out people are sent to sign in, the schema reads in a browser, and it documents
the error envelope for every operation and a shape for every response."""

from __future__ import annotations

import json

import jsonschema
import yaml
from django.test import TestCase
from django.urls import reverse
from rest_framework.test import APIClient

from tests.support.factories import UserFactory

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


class DocsAccessTests(TestCase):
    def test_signed_out_people_are_sent_from_the_docs_to_sign_in_and_back(self):
        response = self.client.get(reverse("api-docs"))
        self.assertEqual(response.status_code, 302)
        self.assertEqual(response["Location"], "/accounts/login/?next=/api/docs/")

    def test_signed_out_browsers_are_sent_from_the_schema_to_sign_in(self):
        response = self.client.get(reverse("api-schema"), headers={"accept": BROWSER})
        self.assertEqual(response.status_code, 302)
        self.assertEqual(response["Location"], "/accounts/login/?next=/api/schema/")

    def test_signed_out_api_clients_still_get_401_in_the_envelope(self):
        response = APIClient().get(reverse("api-schema"), headers={"accept": "application/vnd.oai.openapi+json"})
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response.json()["error"]["code"], "not_authenticated")

    def test_signed_in_people_see_the_docs(self):
        self.client.force_login(UserFactory())
        self.assertEqual(self.client.get(reverse("api-docs")).status_code, 200)


class SchemaInBrowserTests(TestCase):
    def setUp(self):
        self.client.force_login(UserFactory())

    def test_the_schema_opens_as_yaml_text_in_a_browser(self):
        response = self.client.get(reverse("api-schema"), headers={"accept": BROWSER})
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response["Content-Type"], "text/plain; charset=utf-8")
        self.assertTrue(response["Content-Disposition"].startswith("inline"))
        self.assertTrue(yaml.safe_load(response.content)["openapi"].startswith("3."))

    def test_format_json_opens_as_json_text(self):
        response = self.client.get(reverse("api-schema"), {"format": "json"}, headers={"accept": BROWSER})
        self.assertEqual(response["Content-Type"], "text/plain; charset=utf-8")
        self.assertIn("/api/v1/me/", json.loads(response.content)["paths"])

    def test_tools_still_get_the_openapi_media_types(self):
        response = self.client.get(reverse("api-schema"), headers={"accept": "application/vnd.oai.openapi"})
        self.assertEqual(response["Content-Type"], "application/vnd.oai.openapi; charset=utf-8")
        response = self.client.get(reverse("api-schema"), headers={"accept": "application/json"})
        self.assertEqual(response["Content-Type"], "application/json")


class SchemaContentTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.user = UserFactory()

    def setUp(self):
        api = APIClient()
        api.force_authenticate(self.user)
        self.schema = api.get(reverse("api-schema"), {"format": "json"}).json()

    def operations(self):
        for path, operations in self.schema["paths"].items():
            for method, operation in operations.items():
                yield f"{method.upper()} {path}", operation

    def test_every_operation_documents_the_error_envelope_for_its_4xx(self):
        ref = {"$ref": "#/components/schemas/ErrorEnvelope"}
        checked = 0
        for name, operation in self.operations():
            for status in ("400", "401", "403", "404", "503"):  # 503: the database cannot be reached
                with self.subTest(operation=name, status=status):
                    response = operation["responses"][status]
                    self.assertEqual(response["content"]["application/json"]["schema"], ref)
                    self.assertTrue(response["description"])
            checked += 1
        self.assertGreater(checked, 40)

    def test_writes_document_the_conflict_of_a_refusing_state(self):
        ref = {"$ref": "#/components/schemas/ErrorEnvelope"}
        writes = 0
        for name, operation in self.operations():
            if name.startswith("GET ") or name == "POST /api/v1/auth/token/":
                self.assertNotIn("409", operation["responses"], name)
                continue
            writes += 1
            with self.subTest(operation=name):
                self.assertEqual(operation["responses"]["409"]["content"]["application/json"]["schema"], ref)
        self.assertGreater(writes, 20)
        for name, operation in self.operations():
            with self.subTest(operation=name):
                self.assertEqual("415" in operation["responses"], "requestBody" in operation)
        sign_in = self.schema["paths"]["/api/v1/auth/token/"]["post"]["responses"]
        self.assertEqual(sign_in["429"]["content"]["application/json"]["schema"], ref)
        upload = self.schema["paths"]["/api/v1/cases/{id}/files/upload/"]["post"]["responses"]
        for status in ("413", "503"):
            self.assertEqual(upload[status]["content"]["application/json"]["schema"], ref)
        self.assertIn("file store", upload["503"]["description"])  # the view's own reason is kept

    def test_every_response_has_a_shape(self):
        for name, operation in self.operations():
            for status, response in operation["responses"].items():
                with self.subTest(operation=name, status=status):
                    if status == "204":
                        self.assertNotIn("content", response)
                        continue
                    for media_type, content in response["content"].items():
                        schema = content["schema"]
                        free_form = schema.get("type") == "object" and not schema.get("properties")
                        self.assertFalse(free_form, f"{media_type} is a free-form object")

    def test_real_errors_match_the_documented_envelope(self):
        envelope = self.schema["components"]["schemas"]["ErrorEnvelope"]
        anonymous = APIClient()
        bodies = [
            anonymous.get("/api/v1/me/").json(),  # 401
            anonymous.post("/api/v1/auth/token/", {"email": "x"}, format="json").json(),  # 400 with fields
        ]
        signed_in = APIClient()
        signed_in.force_authenticate(self.user)
        bodies.append(signed_in.get("/api/v1/audit-events/").json())  # 403
        bodies.append(signed_in.get("/api/v1/no-such/").json())  # 404
        for body in bodies:
            jsonschema.validate(body, envelope)
        self.assertEqual([b["error"]["status"] for b in bodies], [401, 400, 403, 404])
        # The envelope's required fields are enforced: a bare DRF error would not validate.
        with self.assertRaises(jsonschema.ValidationError):
            jsonschema.validate({"detail": "Not found."}, envelope)
