"""The typed signed-in user of a request, and the storage name of a file field that must hold a file."""

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory, SimpleTestCase, TestCase
from rest_framework.request import Request

from diagnosis.models import Prediction
from platform_core.accounts.requests import signed_in_user
from platform_core.storage import stored_name
from tests.support.factories import UserFactory


class SignedInUserTests(TestCase):
    def test_a_signed_in_request_gives_its_user_for_pages_and_the_api(self):
        user = UserFactory(email="coord@visus.example")
        request = RequestFactory().get("/")
        request.user = user
        self.assertIs(signed_in_user(request), user)
        api_request = Request(request)
        api_request.user = user
        self.assertIs(signed_in_user(api_request), user)

    def test_an_anonymous_request_is_refused_not_passed_on(self):
        request = RequestFactory().get("/")
        request.user = AnonymousUser()
        with self.assertRaisesMessage(PermissionDenied, "Sign in"):
            signed_in_user(request)


class StoredNameTests(SimpleTestCase):
    def test_a_file_field_without_a_file_names_the_field(self):
        prediction = Prediction(attention_overlay="predictions/x.png")
        self.assertEqual(stored_name(prediction.attention_overlay), "predictions/x.png")
        with self.assertRaisesMessage(ValueError, "attention_overlay holds no stored file"):
            stored_name(Prediction().attention_overlay)
