"""Enrolment cross-checks (issue 10, item 10): no default for clinical facts, the subject's facts against the
answered eligibility checklist, and every problem at once, in the service (API) and on the page."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.test import SimpleTestCase, TestCase
from django.urls import reverse

from platform_core.audit.models import AuditEvent
from tests.support.factories import EXCLUSION, INCLUSION, TrialWorld
from trials import services
from trials.forms import EnrolForm
from trials.models import Subject, TrialSite
from trials.subject_checks import minimum_age, requires_diabetes, subject_fact_problems

ELIGIBLE = {c: True for c in INCLUSION} | {c: False for c in EXCLUSION}


class CriteriaReadingTests(SimpleTestCase):
    def test_age_floors_are_read_from_plain_wording(self):
        for criterion, floor in (
            ("Age 18 or over", 18),
            ("Age 18 years or over", 18),
            ("Aged 40+", 40),
            ("Age ≥ 50 years", 50),
            ("age at least 21", 21),
            ("Adult", 18),
            ("Written informed consent", None),
            ("Stage 3 or over", None),
        ):
            with self.subTest(criterion=criterion):
                self.assertEqual(minimum_age(criterion), floor)

    def test_diabetes_is_required_only_when_asked_for(self):
        self.assertTrue(requires_diabetes("Diabetes mellitus type 1 or 2"))
        self.assertTrue(requires_diabetes("Diagnosed diabetic"))
        self.assertFalse(requires_diabetes("No diabetes"))
        self.assertFalse(requires_diabetes("Non-diabetic volunteers"))
        self.assertFalse(requires_diabetes("Glaucoma suspect"))

    def test_contradictions_are_reported_by_field_all_at_once(self):
        problems = subject_fact_problems(
            inclusion=INCLUSION,
            exclusion=["Diabetes"],
            answers=ELIGIBLE | {"Diabetes": False},
            age=16,
            diabetes_type="none",
            diabetes_duration_years=3,
        )
        self.assertEqual(sorted(problems), ["age", "diabetes_duration_years", "diabetes_type"])
        self.assertIn("Age 16 contradicts the inclusion criterion “Age 18 or over”", problems["age"][0])
        self.assertIn("“No diabetes” contradicts", problems["diabetes_type"][0])

    def test_a_diabetic_subject_contradicts_a_diabetes_exclusion_answered_no(self):
        problems = subject_fact_problems(
            inclusion=[],
            exclusion=["Diabetes"],
            answers={"Diabetes": False},
            age=50,
            diabetes_type="type2",
            diabetes_duration_years=None,
        )
        self.assertIn("meets the exclusion criterion “Diabetes”", problems["diabetes_type"][0])

    def test_unanswered_criteria_and_consistent_facts_raise_nothing(self):
        self.assertEqual(
            subject_fact_problems(
                inclusion=INCLUSION,
                exclusion=EXCLUSION,
                answers={},
                age=10,
                diabetes_type="none",
                diabetes_duration_years=None,
            ),
            {},
        )
        self.assertEqual(
            subject_fact_problems(
                inclusion=INCLUSION,
                exclusion=EXCLUSION,
                answers=ELIGIBLE,
                age=50,
                diabetes_type="type2",
                diabetes_duration_years=50,
            ),
            {},
        )

    def test_a_duration_longer_than_the_age_is_refused(self):
        problems = subject_fact_problems(
            inclusion=[], exclusion=[], answers={}, age=30, diabetes_type="type1", diabetes_duration_years=31
        )
        self.assertIn("longer than the subject's age (30)", problems["diabetes_duration_years"][0])


class EnrolServiceCrossCheckTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.w = TrialWorld()

    def kwargs(self, **overrides):
        kwargs = {
            "actor": self.w.coord1,
            "site": TrialSite.objects.get(trial=self.w.trial, hospital=self.w.h1),
            "eligibility": dict(ELIGIBLE),
            "consent_date": dt.date(2026, 1, 5),
            "consent_form_version": "v1.0",
            "sex": "male",
            "age": 50,
            "diabetes_type": "type1",
            "diabetes_duration_years": 5,
        }
        return kwargs | overrides

    def test_no_diabetes_in_a_trial_that_requires_it_is_refused_with_every_other_problem(self):
        before = (Subject.objects.count(), AuditEvent.objects.count())
        with self.assertRaises(ValidationError) as caught:
            services.subject_enroll(
                **self.kwargs(diabetes_type="none", age=17, consent_form_version=" ", diabetes_duration_years=None)
            )
        self.assertEqual(sorted(caught.exception.message_dict), ["age", "consent_form_version", "diabetes_type"])
        self.assertEqual(before, (Subject.objects.count(), AuditEvent.objects.count()))

    def test_consistent_facts_enrol(self):
        subject = services.subject_enroll(**self.kwargs())
        self.assertEqual((subject.diabetes_type, subject.diabetes_duration_years), ("type1", 5))


class EnrolPageCrossCheckTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.w = TrialWorld()

    def setUp(self):
        self.client.force_login(self.w.coord1)
        self.url = reverse("trials:subject-enrol", args=[self.w.trial.slug])

    def data(self, **overrides):
        form = self.client.get(self.url).context["form"]
        data = {
            "submission_token": form.initial["submission_token"],
            "site": form.fields["site"].queryset.get().pk,
            "inclusion_0": "yes",
            "inclusion_1": "yes",
            "exclusion_0": "no",
            "consent_date": "2026-03-01",
            "consent_form_version": "v3",
            "sex": "female",
            "age": 64,
            "diabetes_type": "type2",
            "diabetes_duration_years": 10,
        }
        return data | overrides

    def test_clinical_choices_have_no_default(self):
        form = EnrolForm(trial=self.w.trial, sites=TrialSite.objects.filter(trial=self.w.trial))
        for name in ("sex", "diabetes_type"):
            with self.subTest(field=name):
                self.assertEqual(form.fields[name].choices[0], ("", "Choose…"))
                self.assertTrue(form.fields[name].required)
                self.assertIsNone(form[name].value())
        html = self.client.get(self.url).content.decode()
        self.assertIn('<option value="" selected>Choose…</option>', html)

    def test_an_untouched_choice_is_refused_not_recorded(self):
        before = Subject.objects.count()
        response = self.client.post(self.url, self.data(sex="", diabetes_type=""))
        self.assertContains(response, "Choose the subject&#x27;s sex.")
        self.assertContains(response, "Choose the subject&#x27;s diabetes type")
        self.assertEqual(before, Subject.objects.count())

    def test_no_diabetes_in_a_trial_that_requires_it_is_refused_on_the_page(self):
        before = (Subject.objects.count(), AuditEvent.objects.count())
        response = self.client.post(self.url, self.data(diabetes_type="none", diabetes_duration_years=""))
        self.assertContains(response, "“No diabetes” contradicts the inclusion criterion “Diabetes type 1 or 2”")
        self.assertEqual(before, (Subject.objects.count(), AuditEvent.objects.count()))

    def test_an_unmet_criterion_and_a_contradiction_show_together(self):
        response = self.client.post(self.url, self.data(exclusion_0="yes", age=15, consent_date=""))
        for message in (
            "Exclusion criterion applies: the subject is not eligible.",
            "Age 15 contradicts the inclusion criterion “Age 18 or over”",
            "Record the date the subject gave consent.",
        ):
            self.assertContains(response, message)

    def test_consistent_answers_enrol(self):
        response = self.client.post(self.url, self.data(), follow=True)
        self.assertContains(response, "Subject enrolled:")


class CaseFormChoiceTests(SimpleTestCase):
    def test_the_eye_has_no_default(self):
        from trials.forms import CaseForm

        form = CaseForm()
        self.assertEqual(form.fields["laterality"].choices[0], ("", "Choose…"))
        self.assertIsNone(form["laterality"].value())
        self.assertEqual(CaseForm({"visit_day": 0}).errors["laterality"], ["Choose the eye."])
