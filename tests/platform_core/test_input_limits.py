"""Every free-text field and list that people can submit has an upper bound (issue 13, item 8).

``FormAndSerializerBoundsTests`` walks the whole project: every form class (pages, admin, the admin's generated
model forms) and every serializer that reads a request's data (found in the source: each call with ``data=``, and
the serializer of each writable API view). A writable text field without ``max_length``, a list without a maximum
count or an unbounded mapping or JSON field fails it, so a new unbounded field fails CI. Only fields that are not
free text (numbers, dates, choices, files, related rows) are allowed as they are.

The other classes submit over-limit values through the pages and the API: each gets a field error, and nothing is
written (no row, no audit event).
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
from pathlib import Path
from typing import Any
from unittest import mock

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.forms import ReadOnlyPasswordHashField
from django.core.exceptions import ValidationError
from django.test import RequestFactory, TestCase
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework import serializers
from rest_framework.test import APIClient

from platform_core import limits
from platform_core.accounts.models import Hospital, User
from platform_core.api.fields import BoundedDictField
from platform_core.audit.models import AuditEvent
from platform_core.audit.services import audit_record
from reading import services as reading_services
from reading.models import LesionMark, Read
from tests.support.factories import TrialWorld
from tests.support.reading import GOOD, GOOD_CONF, ReadingWorld
from trials.models import Case, DataQuery, Subject, SubjectStatus, Trial, TrialSite
from trials.reading_form import CATALOGUE
from trials.services import trial_create

PROJECT = ("platform_core", "trials", "diagnosis", "reading", "evaluation", "demo")
# Pure cores import no Django (import-linter's pure-cores contract): they define no form or serializer.
PURE = ("trials.uploads", "diagnosis.networks", "diagnosis.training", "evaluation.stats")
ROOT = Path(settings.BASE_DIR)

# Fields that are not free text: a number, a date, a choice among a fixed set, a file (its size is bounded by the
# upload limits), a related row looked up by key. Nothing else passes without a bound.
FORM_NOT_TEXT = (
    forms.IntegerField,  # FloatField and DecimalField are IntegerFields
    forms.DateField,
    forms.DateTimeField,
    forms.TimeField,
    forms.DurationField,
    forms.BooleanField,  # NullBooleanField too
    forms.ChoiceField,  # TypedChoiceField, MultipleChoiceField
    forms.ModelChoiceField,  # ModelMultipleChoiceField
    forms.FileField,  # ImageField
    forms.UUIDField,  # a CharField, but only a UUID parses
    ReadOnlyPasswordHashField,
)
SERIALIZER_NOT_TEXT = (
    serializers.IntegerField,
    serializers.FloatField,
    serializers.DecimalField,
    serializers.BooleanField,
    serializers.DateField,
    serializers.DateTimeField,
    serializers.TimeField,
    serializers.DurationField,
    serializers.UUIDField,
    serializers.ChoiceField,  # MultipleChoiceField, FilePathField
    serializers.RelatedField,
    serializers.FileField,
    serializers.HiddenField,
)


# Bases that are never a form on their own (their subclasses are checked).
BASES_ONLY = {"_ManagedHospitalForm"}


def project_modules() -> list[str]:
    """Import every module of the project's apps (not migrations, not the pure cores) and return their names."""
    names = []
    for package in PROJECT:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
            if ".migrations" in info.name or info.name.startswith(PURE):
                continue
            importlib.import_module(info.name)
            names.append(info.name)
    return names


def subclasses(base: type) -> list[type]:
    found, stack = set(), [base]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                stack.append(sub)
    return sorted(
        (c for c in found if c.__module__.split(".")[0] in PROJECT), key=lambda c: (c.__module__, c.__qualname__)
    )


def names_called_with_data() -> set[str]:
    """Names of everything the project's source calls with a ``data=`` argument (``X(data=...)``,
    ``self.X(data=...)``): the serializers that read a request's data."""
    names = set()
    for package in PROJECT:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call) and any(k.arg == "data" for k in node.keywords):
                    if isinstance(node.func, ast.Name):
                        names.add(node.func.id)
                    elif isinstance(node.func, ast.Attribute):
                        names.add(node.func.attr)
    return names


def writable_view_serializers() -> set[type]:
    """``serializer_class`` of every API view under the URL patterns that takes POST, PUT or PATCH."""
    found: set[type] = set()

    def walk(patterns: list[Any]) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns)
            elif isinstance(pattern, URLPattern):
                view = getattr(pattern.callback, "cls", None) or getattr(pattern.callback, "view_class", None)
                if view is None:
                    continue
                serializer = getattr(view, "serializer_class", None)
                if serializer is not None and any(hasattr(view, m) for m in ("post", "put", "patch")):
                    found.add(serializer)

    walk(get_resolver().url_patterns)
    return found


def input_serializers() -> list[type]:
    project_modules()
    called = names_called_with_data()
    by_view = writable_view_serializers()
    return [c for c in subclasses(serializers.BaseSerializer) if c.__name__ in called or c in by_view]


def serializer_field_problem(path: str, field: serializers.Field) -> list[str]:
    if field.read_only:
        return []
    if isinstance(field, BoundedDictField):
        return serializer_field_problem(f"{path}[*]", field.child)
    if isinstance(field, serializers.DictField | serializers.HStoreField):
        return [f"{path}: a mapping without a bound (use platform_core.api.fields.BoundedDictField)"]
    if isinstance(field, serializers.JSONField):
        return [f"{path}: JSON without a bound"]
    if isinstance(field, serializers.ListField | serializers.ListSerializer):
        if field.max_length is None:
            return [f"{path}: a list without max_length"]
        return serializer_field_problem(f"{path}[*]", field.child)
    if isinstance(field, serializers.BaseSerializer):
        return [p for name, f in field.fields.items() for p in serializer_field_problem(f"{path}.{name}", f)]
    if isinstance(field, serializers.CharField):  # EmailField, SlugField, RegexField, URLField, IPAddressField
        return [] if field.max_length is not None else [f"{path}: text without max_length"]
    if isinstance(field, SERIALIZER_NOT_TEXT) or type(field).__name__ == "_UnvalidatedField":
        return []  # _UnvalidatedField: the values of a BoundedDictField, which bounds them itself
    return [f"{path}: {type(field).__name__} is not classified (bound it, or add it here if it is not free text)"]


def form_field_problem(path: str, field: forms.Field) -> list[str]:
    if field.disabled:
        return []
    if isinstance(field, forms.UUIDField):
        return []
    if isinstance(field, forms.CharField):  # EmailField, SlugField, RegexField, URLField, JSONField
        return [] if field.max_length is not None else [f"{path}: text without max_length"]
    if isinstance(field, FORM_NOT_TEXT):
        return []
    return [f"{path}: {type(field).__name__} is not classified (bound it, or add it here if it is not free text)"]


class FormAndSerializerBoundsTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.w = TrialWorld()
        cls.superuser = User.objects.create_superuser(
            email="root@visus.example", password="x-Visus-2026!", full_name="Root"
        )

    def form_kwargs(self) -> dict[str, dict[str, Any]]:
        """Arguments of the forms that need some; ``identity=True`` adds the e-mail field of a first signing."""
        trial = self.w.trial
        questions = list(CATALOGUE)
        hospitals = {"hospitals": Hospital.objects.all()}
        return {
            "SiteAddForm": {"trial": trial},
            "EnrolForm": {"trial": trial, "sites": TrialSite.objects.filter(trial=trial)},
            "ReadForm": {"questions": questions},
            "AmendForm": {"questions": questions, "identity": True},
            "SignForm": {"identity": True},
            "LockForm": {"identity": True},
            "AdjudicationForm": {"identity": True},
            "CalibrationForm": {"cases": Case.objects.all(), "questions": questions},
            "AuditFilterForm": {"user": self.w.manager},
            "InvitationForm": hospitals,
            "ExistingAccountRoleForm": hospitals,
            "RoleGrantForm": hospitals,
            "DataQueryRaiseForm": {"files": None},
        }

    def form_instance(self, cls: type) -> forms.BaseForm:
        kwargs = self.form_kwargs().get(cls.__name__, {})
        try:
            return cls(**kwargs)
        except (TypeError, KeyError) as exc:
            self.fail(f"{cls.__module__}.{cls.__qualname__} needs arguments: add them to form_kwargs ({exc})")

    def test_every_form_bounds_its_text_fields(self):
        project_modules()
        classes = subclasses(forms.BaseForm)
        self.assertGreater(len(classes), 40, "the walk found too few forms")
        problems = []
        for cls in classes:
            if cls.__name__ in BASES_ONLY:
                continue
            form = self.form_instance(cls)
            name = f"{cls.__module__}.{cls.__qualname__}"
            problems += [p for field, f in form.fields.items() for p in form_field_problem(f"{name}.{field}", f)]
        self.assertEqual(problems, [], "unbounded form fields")

    def test_every_admin_form_bounds_its_text_fields(self):
        request = RequestFactory().get("/admin/")
        request.user = self.superuser
        checked, problems = 0, []
        for model, model_admin in admin.site._registry.items():
            instance = model._default_manager.first()
            for obj, allowed in (
                (None, model_admin.has_add_permission(request)),
                (instance, instance is not None and model_admin.has_change_permission(request, instance)),
            ):
                if not allowed:
                    continue
                form_class = model_admin.get_form(request, obj, change=obj is not None)
                form = form_class(instance=obj) if obj is not None else form_class()
                readonly = set(model_admin.get_readonly_fields(request, obj))
                name = f"admin {model._meta.label} {'change' if obj else 'add'}"
                checked += 1
                for field, f in form.fields.items():
                    if field not in readonly:
                        problems += form_field_problem(f"{name}.{field}", f)
        self.assertGreater(checked, 5, "the admin walk found too few forms")
        self.assertEqual(problems, [], "unbounded admin form fields")

    def test_every_input_serializer_bounds_its_text_fields_and_lists(self):
        classes = input_serializers()
        found = {f"{c.__module__}.{c.__qualname__}" for c in classes}
        for known in (
            "trials.apis.TrialCreateApi.InputSerializer",
            "reading.apis.ReadDraftApi.ReadDraftInputSerializer",
            "reading.apis.CalibrationCaseMarkApi.CalibrationCaseMarkInputSerializer",
            "platform_core.api.views.TokenObtainApi.InputSerializer",
            "reading.apis.MarkInputSerializer",
        ):
            self.assertIn(known, found, "the walk missed an input serializer")
        self.assertGreater(len(classes), 20)
        problems = []
        for cls in classes:
            problems += serializer_field_problem(f"{cls.__module__}.{cls.__qualname__}", cls())
        self.assertEqual(problems, [], "unbounded serializer fields")

    def test_the_checks_find_an_unbounded_field(self):
        class Loose(serializers.Serializer):
            note = serializers.CharField()
            tags = serializers.ListField(child=serializers.CharField(max_length=10))
            answers = serializers.DictField()
            bounded = BoundedDictField()

        class LooseForm(forms.Form):
            note = forms.CharField()
            when = forms.DateField()

        self.assertEqual(
            serializer_field_problem("Loose", Loose()),
            [
                "Loose.note: text without max_length",
                "Loose.tags: a list without max_length",
                "Loose.answers: a mapping without a bound (use platform_core.api.fields.BoundedDictField)",
            ],
        )
        form = LooseForm()
        self.assertEqual(
            [p for n, f in form.fields.items() for p in form_field_problem(f"LooseForm.{n}", f)],
            ["LooseForm.note: text without max_length"],
        )


def api(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def envelope_fields(test: TestCase, response: Any) -> dict[str, Any]:
    test.assertEqual(response.status_code, 400, response.content[:500])
    body = response.json()["error"]
    test.assertEqual(body["code"], "validation_error")
    return body["fields"]


TRIAL_BODY = {
    "slug": "limits",
    "protocol_number": "LIM-1",
    "title": "Limits",
    "subject_prefix": "LM01",
    "modalities": ["fundus"],
    "reading_form": ["icdr_grade", "confidence"],
}


class OverLimitTrialTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.w = TrialWorld()

    def assert_nothing_written(self, events_before: int) -> None:
        self.assertFalse(Trial.objects.filter(slug="limits").exists())
        self.assertEqual(AuditEvent.objects.count(), events_before)

    def test_the_finding_5000_criteria_of_1000_characters_through_the_api(self):
        events = AuditEvent.objects.count()
        body = {**TRIAL_BODY, "inclusion_criteria": ["x" * 1000] * 5000}
        fields = envelope_fields(self, api(self.w.manager).post(reverse("api:trials:trial-create"), body, "json"))
        self.assertIn("inclusion_criteria", fields)
        self.assert_nothing_written(events)

    def test_one_criterion_too_many_or_too_long_through_the_api_and_the_largest_list_that_fits(self):
        events = AuditEvent.objects.count()
        client = api(self.w.manager)
        for criteria in (["c"] * (limits.CRITERIA + 1), ["ok", "x" * (limits.CRITERION + 1)]):
            fields = envelope_fields(
                self, client.post(reverse("api:trials:trial-create"), {**TRIAL_BODY, "exclusion_criteria": criteria})
            )
            self.assertIn("exclusion_criteria", fields)
            self.assert_nothing_written(events)
        largest = [f"{n:03d}" + "x" * (limits.CRITERION - 3) for n in range(limits.CRITERIA)]
        response = client.post(
            reverse("api:trials:trial-create"), {**TRIAL_BODY, "inclusion_criteria": largest}, "json"
        )
        self.assertEqual(response.status_code, 201, response.content[:300])
        self.assertEqual(Trial.objects.get(slug="limits").inclusion_criteria, largest)

    def test_over_limit_criteria_on_the_trial_page(self):
        self.client.force_login(self.w.manager)
        events = AuditEvent.objects.count()
        page = {
            **TRIAL_BODY,
            "readers_per_case": 1,
            "reading_design": "unaided",
            "washout_days": 0,
            "reference_rule": "majority",
            "vf_max_fixation_losses": 20,
            "vf_max_false_positives": 15,
            "vf_max_false_negatives": 33,
        }
        too_many = "\n".join(f"criterion {n}" for n in range(limits.CRITERIA + 1))
        response = self.client.post(reverse("trials:trial-create"), {**page, "inclusion_criteria": too_many})
        self.assertEqual(response.status_code, 200)
        self.assertEqual(
            response.context["form"].errors["inclusion_criteria"],
            [f"{limits.CRITERIA + 1} criteria given; at most {limits.CRITERIA} are allowed."],
        )
        too_long = "fine\n" + "y" * (limits.CRITERION + 1)
        response = self.client.post(reverse("trials:trial-create"), {**page, "exclusion_criteria": too_long})
        self.assertContains(response, f"Criterion 2 has {limits.CRITERION + 1} characters")
        self.assert_nothing_written(events)

    def test_the_services_refuse_over_limit_criteria_whatever_calls_them(self):
        events = AuditEvent.objects.count()
        fields = {k: v for k, v in TRIAL_BODY.items()}
        with self.assertRaises(ValidationError) as refused:
            trial_create(actor=self.w.manager, **fields, inclusion_criteria=["x"] * (limits.CRITERIA + 1))
        self.assertIn("inclusion_criteria", refused.exception.message_dict)
        self.assert_nothing_written(events)

    def test_the_audit_trail_refuses_an_over_limit_reason_from_any_writer(self):
        events = AuditEvent.objects.count()
        with self.assertRaises(ValidationError) as refused:
            audit_record(actor=self.w.manager, action="trial.update", obj=self.w.trial, reason="r" * 4001)
        self.assertIn("reason", refused.exception.message_dict)
        self.assertEqual(AuditEvent.objects.count(), events)

    def test_an_over_limit_reason_through_the_api_and_the_page(self):
        subject = self.w.subject1
        events = AuditEvent.objects.count()
        reason = "r" * (limits.REASON + 1)
        fields = envelope_fields(
            self, api(self.w.coord1).post(reverse("api:trials:subject-withdraw", args=[subject.pk]), {"reason": reason})
        )
        self.assertEqual(list(fields), ["reason"])
        self.client.force_login(self.w.coord1)
        response = self.client.post(
            reverse("trials:subject-withdraw", args=["dr-trial", subject.pseudonym]), {"reason": reason}, follow=True
        )
        self.assertContains(response, f"at most {limits.REASON} characters", status_code=200)
        subject.refresh_from_db()
        self.assertEqual(subject.status, SubjectStatus.ENROLLED)
        self.assertEqual(AuditEvent.objects.count(), events)

    def test_an_over_limit_query_text_on_the_page(self):
        self.client.force_login(self.w.monitor)
        events = AuditEvent.objects.count()
        response = self.client.post(
            reverse("trials:query-raise", args=[self.w.case1.pk]), {"text": "q" * (limits.TEXT + 1)}, follow=True
        )
        self.assertContains(response, f"at most {limits.TEXT} characters", status_code=400)
        self.assertFalse(DataQuery.objects.exists())
        self.assertEqual(AuditEvent.objects.count(), events)

    def test_an_over_limit_eligibility_mapping_through_the_api(self):
        events, subjects = AuditEvent.objects.count(), Subject.objects.count()
        eligibility = {f"criterion {n}": True for n in range(2 * limits.CRITERIA + 1)}
        body = {
            "site": "H01",
            "eligibility": eligibility,
            "consent_date": "2026-02-01",
            "consent_form_version": "v1.0",
            "sex": "female",
            "age": 64,
            "diabetes_type": "type2",
        }
        fields = envelope_fields(
            self, api(self.w.coord1).post(reverse("api:trials:subject-enroll", args=["dr-trial"]), body, "json")
        )
        self.assertIn("eligibility", fields)
        self.assertEqual((AuditEvent.objects.count(), Subject.objects.count()), (events, subjects))


class OverLimitReadTests(TestCase):
    def setUp(self):
        self.w = ReadingWorld()
        self.read = reading_services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")

    def test_over_limit_answers_and_confidences_through_the_api(self):
        events = AuditEvent.objects.count()
        client = api(self.w.reader)
        url = f"/api/v1/reading/reads/{self.read.pk}/draft/"
        cases = {
            "answers": {f"q{n}": "1" for n in range(limits.MAPPING_ITEMS + 1)},
            "confidences": {"icdr_grade": 50, "k" * (limits.MAPPING_KEY + 1): 1},
        }
        for field, value in cases.items():
            body = {"version": self.read.version, "answers": GOOD, "confidences": GOOD_CONF, field: value}
            self.assertEqual(list(envelope_fields(self, client.put(url, body, format="json"))), [field])
        body = {"version": self.read.version, "answers": {"icdr_grade": "v" * (limits.MAPPING_VALUE + 1)}}
        self.assertIn("answers", envelope_fields(self, client.put(url, body, format="json")))
        body = {"version": self.read.version, "answers": {"icdr_grade": {"nested": ["deep"]}}}
        self.assertIn("answers", envelope_fields(self, client.put(url, body, format="json")))
        self.read.refresh_from_db()
        self.assertEqual((self.read.version, self.read.answers), (1, {}))
        self.assertEqual(AuditEvent.objects.count(), events)

    def test_an_over_limit_amend_reason_through_the_api(self):
        events = AuditEvent.objects.count()
        body = {
            "version": self.read.version,
            "reason": "r" * (limits.REASON + 1),
            "answers": GOOD,
            "confidences": GOOD_CONF,
            "meaning": reading_services.MEANINGS["amend"][0],
            "password": "irrelevant",
            "username": self.w.reader.email,
        }
        response = api(self.w.reader).post(f"/api/v1/reading/reads/{self.read.pk}/amend/", body, format="json")
        fields = envelope_fields(self, response)
        self.assertIn("reason", fields)
        self.assertEqual(AuditEvent.objects.count(), events)
        self.assertEqual(Read.objects.get(pk=self.read.pk).version, self.read.version)

    def test_a_read_holds_at_most_the_limit_of_lesion_marks(self):
        case_file = self.read.case.files.first()
        mark = {"kind": "haemorrhage", "shape": "point", "x": 10.0, "y": 10.0}
        with mock.patch.object(limits, "MARKS_PER_READ", 2):
            for _ in range(2):
                reading_services.mark_add(reader=self.w.reader, read=self.read, case_file=case_file, **mark)
            events = AuditEvent.objects.count()
            response = api(self.w.reader).post(
                f"/api/v1/reading/reads/{self.read.pk}/marks/", {"case_file": str(case_file.pk), **mark}, "json"
            )
            self.assertIn("marks", envelope_fields(self, response))
        self.assertEqual(LesionMark.objects.filter(read=self.read).count(), 2)
        self.assertEqual(AuditEvent.objects.count(), events)


class OverLimitJsonTests(TestCase):
    def test_a_model_configuration_of_too_many_values_is_a_form_error_on_the_page_and_in_the_admin(self):
        from diagnosis.admin import ModelRegisterForm as AdminRegisterForm
        from diagnosis.forms import ModelRegisterForm

        huge = json.dumps({"layers": list(range(limits.JSON_ITEMS + 1))})
        fits = json.dumps({"layers": list(range(10))})
        page = ModelRegisterForm(data={"config": huge})
        self.assertFalse(page.is_valid())
        self.assertIn(f"at most {limits.JSON_ITEMS:,} are allowed", " ".join(page.errors["config"]))
        self.assertNotIn("config", ModelRegisterForm(data={"config": fits}).errors)
        long_text = ModelRegisterForm(data={"config": json.dumps({"note": "x" * limits.DOCUMENT})})
        self.assertIn(f"at most {limits.DOCUMENT} characters", " ".join(long_text.errors["config"]))
        admin_form = AdminRegisterForm(data={"name": "m", "version": "1", "model_card_json": huge})
        self.assertFalse(admin_form.is_valid())
        self.assertIn(f"at most {limits.JSON_ITEMS:,} are allowed", " ".join(admin_form.errors["model_card_json"]))
