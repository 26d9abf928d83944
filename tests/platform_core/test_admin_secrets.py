"""No secret typed into the admin, or given to a service, ever reaches the audit trail, a log line or a page.

The walk visits the add page and the change page of an existing row of every model registered with the admin
(``admin.site._registry``: a model registered later is walked too), types a distinct secret into every
password-, token- or key-like field (and into such extra fields a browser might send), submits, and then
searches every column of every audit event, every log record and every response body for each secret.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from typing import Any

from django.contrib import admin
from django.contrib.auth.models import Group
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase
from django.urls import NoReverseMatch, reverse

from platform_core.accounts.models import Role, User
from platform_core.audit.models import AuditEvent
from tests.support.factories import TEST_PASSWORD, HospitalFactory, TrialWorld

SECRET_LIKE = re.compile(r"pass|token|key|secret", re.IGNORECASE)
EXTRA_SECRET_FIELDS = ("password", "api_token", "api_key", "secret")


class RecordingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name}: {text} {record.args!r} {record.__dict__!r}")


@contextlib.contextmanager
def recorded_logs():
    """Every record of the project's and Django's loggers at DEBUG and above (the test runner quietens
    django.request to ERROR; here it speaks), and of any other logger at its own level; recorded, not printed."""
    handler = RecordingHandler()
    root = logging.getLogger()
    loggers = [root] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    saved = {logger: (logger.level, logger.handlers[:], logger.propagate) for logger in loggers}
    for logger in loggers:
        logger.handlers = [handler]
        logger.propagate = False
        if logger is root or logger.name.split(".")[0] in ("django", "platform_core", "trials", "diagnosis"):
            logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for logger, (level, handlers, propagate) in saved.items():
            logger.setLevel(level)
            logger.handlers = handlers
            logger.propagate = propagate


def form_values(page) -> dict[str, Any]:
    """What the browser would post back unchanged: the form's initial values."""
    data: dict[str, Any] = {}
    adminform = page.context["adminform"].form
    for name, field in adminform.fields.items():
        value = adminform.initial.get(name, field.initial)
        if value is None or getattr(field, "disabled", False):
            continue
        if isinstance(value, bool):
            if value:
                data[name] = "on"
        elif isinstance(value, list | tuple) and value and hasattr(value[0], "pk"):
            data[name] = [str(item.pk) for item in value]
        elif isinstance(value, list | dict):
            data[name] = json.dumps(value)
        else:
            data[name] = str(getattr(value, "pk", value))
    for inline in page.context.get("inline_admin_formsets", []):
        formset = inline.formset
        for key, value in formset.management_form.initial.items():
            data[f"{formset.prefix}-{key}"] = str(value)
        for number, form in enumerate(formset.forms):
            data[f"{formset.prefix}-{number}-id"] = str(form.instance.pk)
    return data


class AdminSecretWalkTests(TestCase):
    def setUp(self):
        from tests.support.registry import register_small_models

        self.w = TrialWorld()
        self.root = User.objects.create_superuser(email="root@visus.example", password=TEST_PASSWORD, full_name="Root")
        # A superuser who manages the trial, so the services accept the walk's writes where the rules allow.
        self.root.memberships.create(hospital=self.w.h1, role=Role.TRIAL_MANAGER)
        self.models = register_small_models()
        from diagnosis.models import InferenceJob, Prediction

        job = InferenceJob.objects.create(case=self.w.case1, model_version=self.models[0], status="succeeded")
        Prediction.objects.create(job=job, case=self.w.case1, model_version=self.models[0], runtime_ms=1.0)
        from diagnosis.models import FusionCalibration
        from diagnosis.networks.fusion import FusionWeights

        FusionCalibration.objects.create(
            trial=self.w.trial, weights=FusionWeights(prior_probability=0.3).to_dict(), eyes=40, positives=12
        )
        Group.objects.create(name="Walkers")
        self.client.force_login(self.root)
        self.secrets: dict[str, str] = {}  # secret -> where it was typed

    def tearDown(self):
        from diagnosis.models import ModelVersion

        for model in ModelVersion.objects.all():
            default_storage.delete(model.weights.name)

    def secret(self, where: str) -> str:
        value = f"Sx{len(self.secrets):03d}-wRmK-q7Zt-secret"  # passes the password rules
        self.secrets[value] = where
        return value

    def valid_add_data(self, model: type) -> dict[str, Any]:
        """Enough for each known add page to succeed, so the walk reaches the services' audit events."""
        from tests.support.registry import checkpoint_bytes, small_dr_network

        label = model._meta.label_lower
        if label == "accounts.user":
            return {"email": "walker@visus.example", "full_name": "Walker"}
        if label == "accounts.hospital":
            return {"code": "h42", "name": "Walk Hospital", "country": "GB"}
        if label == "accounts.membership":
            return {"user": str(self.w.reader.pk), "hospital": str(self.w.h2.pk), "role": Role.MONITOR}
        if label == "auth.group":
            return {"name": "Walk group"}
        if label == "trials.trial":
            return {
                "slug": "walk-trial",
                "protocol_number": "P-walk",
                "title": "Walk trial",
                "subject_prefix": "WK01",
                "modalities": '["fundus"]',
                "reading_form": '["icdr_grade", "referable_dr", "confidence"]',
                "readers_per_case": "2",
                "reading_design": "unaided",
                "washout_days": "0",
                "reference_rule": "adjudication",
                "inclusion_criteria": "[]",
                "exclusion_criteria": "[]",
                "vf_max_fixation_losses": "20",
                "vf_max_false_positives": "15",
                "vf_max_false_negatives": "33",
            }
        if label == "trials.trialsite":
            return {
                "trial": str(self.w.trial.pk),
                "hospital": str(HospitalFactory(code="H43").pk),
                "enrolment_target": "5",
            }
        if label == "diagnosis.modelversion":
            return {
                "name": "walk-model",
                "version": "1",
                "checkpoint": SimpleUploadedFile("walk.pt", checkpoint_bytes(small_dr_network(seed=3))),
                "model_card_json": json.dumps({"intended_use": "walk", "training_data": "none", "metrics": {}}),
            }
        return {}

    def type_secrets(self, page, data: dict[str, Any], where: str) -> dict[str, Any]:
        form = page.context["adminform"].form
        from django import forms

        for name, field in form.fields.items():
            if SECRET_LIKE.search(name) or isinstance(field.widget, forms.PasswordInput):
                data[name] = self.secret(f"{where} field {name}")
        if {"password1", "password2"} <= set(form.fields):
            data["password2"] = data["password1"]
        for name in EXTRA_SECRET_FIELDS:
            data.setdefault(name, self.secret(f"{where} extra {name}"))
        return data

    def submit(self, url: str, data: dict[str, Any], where: str) -> None:
        response = self.client.post(url, data, follow=True)
        self.bodies.append((where, response.content.decode(errors="replace")))

    def walk(self) -> set[str]:
        walked = set()
        for model, model_admin in admin.site._registry.items():
            opts = model._meta
            name = f"{opts.app_label}_{opts.model_name}"
            try:
                add_url = reverse(f"admin:{name}_add")
            except NoReverseMatch:
                add_url = None
            obj = model_admin.get_queryset(self.request_for_root()).first()
            urls = [("add", add_url, None)]
            if obj is not None:
                urls.append(("change", reverse(f"admin:{name}_change", args=[obj.pk]), obj))
            for kind, url, _ in urls:
                if url is None:
                    continue
                page = self.client.get(url)
                self.bodies.append((f"{name} {kind} page", page.content.decode(errors="replace")))
                if page.status_code != 200 or "adminform" not in (page.context or {}):
                    walked.add(name)
                    continue
                data = form_values(page)
                if kind == "add":
                    data.update(self.valid_add_data(model))
                else:
                    data["reason"] = "walked by the secret test"
                self.submit(url, self.type_secrets(page, data, f"{name} {kind}"), f"{name} {kind}")
                walked.add(name)
        return walked

    def request_for_root(self):
        from django.test import RequestFactory

        request = RequestFactory().get("/admin/")
        request.user = self.root
        return request

    def test_no_secret_typed_into_the_admin_reaches_the_trail_a_log_line_or_a_page(self):
        self.bodies: list[tuple[str, str]] = []
        with recorded_logs() as handler:
            walked = self.walk()
            # The user pages the model walk does not reach: a refused add, and setting another's password.
            page = self.client.get(reverse("admin:accounts_user_add"))
            mismatch = {
                "email": "refused@visus.example",
                "full_name": "Refused",
                "password1": self.secret("user add, first of two different passwords"),
                "password2": self.secret("user add, second of two different passwords"),
            }
            self.submit(reverse("admin:accounts_user_add"), mismatch, "user add refused")
            url = reverse("admin:accounts_user_password_change", args=[self.w.coord1.pk])
            page = self.client.get(url)
            self.assertEqual(page.status_code, 200)
            password = self.secret("set password of another user")
            self.submit(url, {"password1": password, "password2": password, "reason": "walk"}, "set password")
            first, second = self.secret("set password, first of two"), self.secret("set password, second of two")
            self.submit(url, {"password1": first, "password2": second, "reason": "walk"}, "set password refused")

        registered = {f"{m._meta.app_label}_{m._meta.model_name}" for m in admin.site._registry}
        self.assertEqual(walked, registered)
        # The walk reached the services: it created a user with a typed password and set another's password.
        walker = User.objects.get(email="walker@visus.example")
        self.assertTrue(any(walker.check_password(s) for s in self.secrets))
        self.assertTrue(AuditEvent.objects.filter(action="user.create", object_id=str(walker.pk)).exists())
        self.w.coord1.refresh_from_db()
        self.assertTrue(self.w.coord1.check_password(password))
        self.assertTrue(AuditEvent.objects.filter(action="user.password_set").exists())
        self.assertFalse(User.objects.filter(email="refused@visus.example").exists())

        self.assertTrue([line for line in handler.lines if line.startswith("django.request: Forbidden")])  # recorded
        trail = [json.dumps(row, default=str) for row in AuditEvent.objects.values()]
        for secret, where in self.secrets.items():
            for row in trail:
                self.assertNotIn(secret, row, f"the secret typed into {where} is in the audit trail")
            for line in handler.lines:
                self.assertNotIn(secret, line, f"the secret typed into {where} is in a log line")
            for page_name, body in self.bodies:
                self.assertNotIn(secret, body, f"the secret typed into {where} is in the response to {page_name}")


# Service parameters whose names look secret but hold no secret: API token rows (not keys), a pure digest.
NOT_SECRET_PARAMETERS = {
    ("platform_core.accounts.services", "api_token_digest"),  # hashes a key; writes nothing
    ("platform_core.accounts.services", "api_token_is_expired"),  # an ApiToken row
    ("platform_core.accounts.services", "api_token_touch"),
    ("platform_core.accounts.services", "api_token_expire"),
}
SERVICE_MODULES = (
    "platform_core.accounts.services",
    "platform_core.audit.services",
    "trials.services",
    "trials.file_services",
    "diagnosis.services",
    "diagnosis.registry",
)


def services_taking_secrets() -> set[tuple[str, str]]:
    import importlib
    import inspect

    found = set()
    for name in SERVICE_MODULES:
        module = importlib.import_module(name)
        for attribute, function in vars(module).items():
            if inspect.isfunction(function) and function.__module__ == name:
                if any(SECRET_LIKE.search(parameter) for parameter in inspect.signature(function).parameters):
                    found.add((name, attribute))
    return found - NOT_SECRET_PARAMETERS


class ServiceSecretTests(TestCase):
    """The services that take a password or token, called on their success and refusal paths, and the
    sign-in and token pages that call them: no secret in the trail or a log line."""

    COVERED = {
        ("platform_core.accounts.services", "user_create"),
        ("platform_core.accounts.services", "user_create_superuser"),
        ("platform_core.accounts.services", "user_password_change"),
        ("platform_core.accounts.services", "user_password_set"),
        ("platform_core.accounts.services", "invitation_accept"),
        ("platform_core.accounts.services", "invitation_by_token"),
        ("platform_core.accounts.services", "invitation_token_digest"),
        ("trials.services", "subject_enroll"),
    }

    def test_every_service_that_takes_a_secret_is_covered_here(self):
        self.assertEqual(services_taking_secrets(), self.COVERED)

    def test_no_secret_given_to_a_service_reaches_the_trail_or_a_log_line(self):
        from django.core.exceptions import ValidationError

        from platform_core.accounts.services import (
            user_create,
            user_create_superuser,
            user_password_change,
            user_password_set,
        )
        from platform_core.errors import ApplicationError
        from tests.support.factories import enrol

        secrets = [f"Sv{n:03d}-pQ4r-Lm8x-secret" for n in range(10)]
        with recorded_logs() as handler:
            w = TrialWorld()
            admin_user = user_create_superuser(email="ops@visus.example", full_name="Ops", password=secrets[0])
            person = user_create(actor=admin_user, email="p@visus.example", full_name="P", password=secrets[1])
            with self.assertRaises(ValidationError):
                user_password_change(user=person, old_password=secrets[2], new_password=secrets[3])
            user_password_change(user=person, old_password=secrets[1], new_password=secrets[4])
            user_password_set(actor=admin_user, user=person, password=secrets[5], reason="reset")
            with self.assertRaises(ValidationError):
                user_password_set(actor=admin_user, user=person, password=secrets[6][:6], reason="too short")
            enrol(coordinator=w.coord1, trial=w.trial, hospital=w.h1, token=secrets[7])
            with self.assertRaises(ApplicationError):
                enrol(coordinator=w.coord1, trial=w.trial, hospital=w.h1, token=secrets[7])
            self.client.post("/accounts/login/", {"username": "p@visus.example", "password": secrets[8]})
            self.client.post("/accounts/login/", {"username": "p@visus.example", "password": secrets[5]})
            response = self.client.post("/api/v1/auth/token/", {"email": "p@visus.example", "password": secrets[5]})
            self.assertEqual(response.status_code, 200, response.content)
            key = response.json()["token"]
            # An invitation: its one-time token (in the e-mail only) and the password the invitee chooses.
            import re

            from django.core import mail

            from platform_core.accounts.models import Role
            from platform_core.accounts.services import (
                invitation_accept,
                invitation_by_token,
                invitation_create,
                invitation_token_digest,
            )

            with self.captureOnCommitCallbacks(execute=True):  # the e-mail goes once the invitation is saved
                invitation_create(
                    actor=w.manager,
                    email="invitee@visus.example",
                    full_name="In Vitee",
                    hospital=w.h1,
                    role=Role.READER,
                    link_base="http://testserver/accounts/invitations/",
                )
            token = re.search(r"/accounts/invitations/([^/\s]+)", mail.outbox[-1].body).group(1)
            self.assertEqual(invitation_by_token(token).token_digest, invitation_token_digest(token))
            with self.assertRaises(ValidationError):
                invitation_accept(token=token, full_name="In Vitee", password="short")
            invitation_accept(token=token, full_name="In Vitee", password=secrets[9])
            self.client.get(f"/accounts/invitations/{token}/")

        self.assertTrue(handler.lines)
        person.refresh_from_db()
        self.assertTrue(person.check_password(secrets[5]))
        self.assertTrue(AuditEvent.objects.filter(action="login.failure", object_id=str(person.pk)).exists())
        trail = [json.dumps(row, default=str) for row in AuditEvent.objects.values()]
        for secret in [*secrets[:6], secrets[6][:6], secrets[7], secrets[8], secrets[9], key, token]:
            for row in trail:
                self.assertNotIn(secret, row)
            for line in handler.lines:
                self.assertNotIn(secret, line)
