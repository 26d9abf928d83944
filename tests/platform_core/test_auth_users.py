"""One account per email regardless of case, and the password rules in the admin's creation form."""

import importlib
from unittest import mock

from django.db import IntegrityError, transaction
from django.test import TestCase
from django.urls import reverse

from platform_core.accounts.admin import UserCreationForm
from platform_core.accounts.models import User
from platform_core.accounts.selectors import user_by_email
from tests.support.factories import UserFactory

migration = importlib.import_module("platform_core.accounts.migrations.0002_api_tokens_email_ci")


class EmailCaseTests(TestCase):
    def test_emails_are_stored_in_lower_case(self):
        user = UserFactory(email="  Mixed.Case@Visus.Example ")
        user.refresh_from_db()
        self.assertEqual(user.email, "mixed.case@visus.example")
        self.assertEqual(user_by_email("MIXED.case@visus.example"), user)

    def test_the_database_refuses_a_case_variant(self):
        UserFactory(email="dup@visus.example")
        other = UserFactory(email="other@visus.example")
        with self.assertRaises(IntegrityError), transaction.atomic():
            User.objects.filter(pk=other.pk).update(email="DUP@visus.example")

    def test_the_migration_lower_cases_emails_and_fails_loudly_on_duplicates(self):
        def run(rows):
            apps = mock.Mock()
            model = apps.get_model.return_value
            model.objects.using.return_value.values_list.return_value = rows
            migration.lower_case_emails(apps, mock.Mock(connection=mock.Mock(alias="default")))
            return model.objects.using.return_value.filter

        filtered = run([(1, "A@x.org"), (2, "b@x.org")])
        filtered.assert_called_once_with(pk=1)
        filtered.return_value.update.assert_called_once_with(email="a@x.org")
        with self.assertRaisesMessage(RuntimeError, "differ only by case"):
            run([(1, "A@x.org"), (2, "a@x.org")])


class AdminUserCreationTests(TestCase):
    def form(self, email="new@visus.example", password="a-Long-pass-123", again=None):
        return UserCreationForm(
            data={"email": email, "full_name": "New Person", "password1": password, "password2": again or password}
        )

    def test_weak_passwords_are_refused(self):
        for weak in ("a", "12345678901", "password123"):
            form = self.form(password=weak)
            self.assertFalse(form.is_valid(), weak)
            self.assertIn("password1", form.errors)

    def test_a_password_like_the_email_is_refused(self):
        form = self.form(email="jonathan.smithers@visus.example", password="jonathan.smithers")
        self.assertFalse(form.is_valid())
        self.assertIn("password1", form.errors)

    def test_mismatched_passwords_are_refused(self):
        self.assertIn("password2", self.form(again="another-Long-pass-9").errors)

    def test_an_email_differing_only_by_case_is_refused(self):
        UserFactory(email="dup@visus.example")
        form = self.form(email="DUP@visus.example")
        self.assertFalse(form.is_valid())
        self.assertEqual(User.objects.filter(email__iexact="dup@visus.example").count(), 1)

    def test_a_valid_form_gives_user_create_a_lower_case_email_and_never_saves_itself(self):
        form = self.form(email="New.Person@Visus.example")
        self.assertTrue(form.is_valid(), form.errors)
        self.assertEqual(form.cleaned_data["email"], "new.person@visus.example")
        with self.assertRaises(NotImplementedError):
            form.save()  # the admin creates users through user_create (tests.platform_core.test_admin_audit)
        self.assertFalse(User.objects.filter(email="new.person@visus.example").exists())

    def test_the_admin_add_page_refuses_a_weak_password(self):
        admin = UserFactory(is_staff=True, is_superuser=True)
        self.client.force_login(admin)
        response = self.client.post(
            reverse("admin:accounts_user_add"),
            {"email": "weak@visus.example", "full_name": "Weak", "password1": "a", "password2": "a"},
        )
        self.assertEqual(response.status_code, 200)
        self.assertFalse(User.objects.filter(email="weak@visus.example").exists())
