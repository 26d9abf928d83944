from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.utils import timezone

from platform_core import limits
from platform_core.accounts.models import Hospital
from trials.models import (
    CaseFile,
    CaseStatus,
    DiabetesType,
    Laterality,
    Modality,
    ReadingDesign,
    ReferenceRule,
    Sex,
    SiteStatus,
    Trial,
    TrialSite,
    TrialStatus,
)
from trials.reading_form import CATALOGUE_CHOICES
from trials.services import EDITABLE_AFTER_DRAFT
from trials.subject_checks import subject_fact_problems

CRITERIA_TEXT = limits.CRITERIA * (limits.CRITERION + 2)  # the textarea of a full list, one per line
CRITERIA_HELP = f"One criterion per line: at most {limits.CRITERIA}, each at most {limits.CRITERION} characters."
YES_NO = [("yes", "Yes"), ("no", "No")]
CHOOSE: list[tuple[str, str]] = [("", "Choose…")]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


class TrialForm(forms.Form):
    protocol_number = forms.CharField(max_length=40)
    title = forms.CharField(max_length=300)
    slug = forms.SlugField(max_length=49, help_text="Short name used in addresses, e.g. demo-dr.")
    subject_prefix = forms.CharField(max_length=8, help_text="Starts every subject ID, e.g. DR01.")
    modalities = forms.MultipleChoiceField(choices=Modality.choices, widget=forms.CheckboxSelectMultiple)
    reading_form = forms.MultipleChoiceField(
        choices=CATALOGUE_CHOICES, widget=forms.CheckboxSelectMultiple, label="Reading form questions"
    )
    readers_per_case = forms.IntegerField(min_value=1, max_value=50, initial=3)
    reading_design = forms.ChoiceField(choices=ReadingDesign.choices)
    washout_days = forms.IntegerField(min_value=0, max_value=365, initial=0)
    reference_rule = forms.ChoiceField(choices=ReferenceRule.choices, label="Reference standard")
    inclusion_criteria = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        max_length=CRITERIA_TEXT,
        help_text=CRITERIA_HELP,
    )
    exclusion_criteria = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        max_length=CRITERIA_TEXT,
        help_text=CRITERIA_HELP,
    )
    # Li et al. 2018: a field is reliable when each rate is under its cut-off (fixation losses under 2/13).
    vf_max_fixation_losses = forms.FloatField(
        min_value=0, max_value=100, initial=round(200 / 13, 4), label="VF fixation losses cut-off (%)"
    )
    vf_max_false_positives = forms.FloatField(
        min_value=0, max_value=100, initial=15, label="VF false positives cut-off (%)"
    )
    vf_max_false_negatives = forms.FloatField(
        min_value=0, max_value=100, initial=15, label="VF false negatives cut-off (%)"
    )
    reason = forms.CharField(
        required=False, max_length=limits.REASON, help_text="Required when changing a trial that has left draft."
    )

    def __init__(self, *args: Any, trial: Trial | None = None, **kwargs: Any) -> None:
        if trial is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                **{f: getattr(trial, f) for f in self.base_fields if hasattr(trial, f)},
                "inclusion_criteria": "\n".join(trial.inclusion_criteria),
                "exclusion_criteria": "\n".join(trial.exclusion_criteria),
            }
        super().__init__(*args, **kwargs)
        if trial is None:
            del self.fields["reason"]
        elif trial.status != TrialStatus.DRAFT:
            # The protocol is fixed once recruiting starts (trials.services.trial_update refuses it too).
            for name, field in self.fields.items():
                if name not in EDITABLE_AFTER_DRAFT and name != "reason":
                    field.disabled = True
                    field.help_text = "Fixed once the trial left draft."

    def clean_subject_prefix(self) -> str:
        return self.cleaned_data["subject_prefix"].strip().upper()

    def _criteria(self, name: str) -> str:
        problem = limits.list_problem(
            _lines(self.cleaned_data.get(name) or ""),
            items=limits.CRITERIA,
            item_length=limits.CRITERION,
            plural="criteria",
            singular="Criterion",
        )
        if problem:
            raise forms.ValidationError(problem)
        return self.cleaned_data.get(name) or ""

    def clean_inclusion_criteria(self) -> str:
        return self._criteria("inclusion_criteria")

    def clean_exclusion_criteria(self) -> str:
        return self._criteria("exclusion_criteria")

    def trial_fields(self) -> dict:
        data = dict(self.cleaned_data)
        data.pop("reason", None)
        data["inclusion_criteria"] = _lines(data["inclusion_criteria"])
        data["exclusion_criteria"] = _lines(data["exclusion_criteria"])
        return data


class TransitionForm(forms.Form):
    status = forms.CharField(widget=forms.HiddenInput, max_length=limits.CODE)
    reason = forms.CharField(required=False, max_length=limits.REASON)


class SiteAddForm(forms.Form):
    hospital = forms.ModelChoiceField(queryset=Hospital.objects.all(), to_field_name="code")
    enrolment_target = forms.IntegerField(min_value=0, max_value=100000)

    def __init__(self, *args: Any, trial: Trial, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hospital = self.fields["hospital"]
        assert isinstance(hospital, forms.ModelChoiceField)
        hospital.queryset = Hospital.objects.exclude(trial_sites__trial=trial)


class SiteUpdateForm(forms.Form):
    enrolment_target = forms.IntegerField(min_value=0, max_value=100000)
    status = forms.ChoiceField(choices=SiteStatus.choices)
    reason = forms.CharField(max_length=limits.REASON, help_text="Why the target or status changes.")


class EnrolForm(forms.Form):
    """The enrolment page: site, eligibility checklist, consent, and the few non-identifying facts."""

    submission_token = forms.CharField(widget=forms.HiddenInput, max_length=64)
    site = forms.ModelChoiceField(queryset=TrialSite.objects.none(), empty_label=None)
    consent_date = forms.DateField(
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"required": "Record the date the subject gave consent."},
    )
    consent_form_version = forms.CharField(
        max_length=40, error_messages={"required": "Record the version of the consent form signed."}
    )
    # Clinical facts have no default: an untouched select must not record "Female" or "No diabetes".
    sex = forms.ChoiceField(choices=CHOOSE + Sex.choices, error_messages={"required": "Choose the subject's sex."})
    age = forms.IntegerField(min_value=0, max_value=130, help_text="Whole years. 90 and over is stored as 90+.")
    diabetes_type = forms.ChoiceField(
        choices=CHOOSE + DiabetesType.choices,
        error_messages={"required": "Choose the subject's diabetes type (“No diabetes” or “Unknown” if so)."},
    )
    diabetes_duration_years = forms.IntegerField(
        min_value=0, max_value=100, required=False, label="Diabetes duration (years)"
    )

    def __init__(self, *args: Any, trial: Trial, sites, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {})["submission_token"] = uuid.uuid4().hex
        super().__init__(*args, **kwargs)
        self.trial = trial
        site_field = self.fields["site"]
        assert isinstance(site_field, forms.ModelChoiceField)
        site_field.queryset = sites
        site_field.label_from_instance = lambda obj: f"{obj.hospital.code} {obj.hospital.name}"  # type: ignore[method-assign]  # Django's documented hook
        self.criteria: list[tuple[str, str, str]] = []
        for n, text in enumerate(trial.inclusion_criteria):
            name = f"inclusion_{n}"
            self.fields[name] = forms.ChoiceField(choices=YES_NO, widget=forms.RadioSelect, label=text, required=False)
            self.criteria.append((name, "inclusion", text))
        for n, text in enumerate(trial.exclusion_criteria):
            name = f"exclusion_{n}"
            self.fields[name] = forms.ChoiceField(choices=YES_NO, widget=forms.RadioSelect, label=text, required=False)
            self.criteria.append((name, "exclusion", text))

    def inclusion_fields(self) -> list:
        return [self[name] for name, kind, _ in self.criteria if kind == "inclusion"]

    def exclusion_fields(self) -> list:
        return [self[name] for name, kind, _ in self.criteria if kind == "exclusion"]

    def eligibility(self) -> dict[str, bool]:
        answers = {}
        for name, _, text in self.criteria:
            value = self.cleaned_data.get(name)
            if value:
                answers[text] = value == "yes"
        return answers

    def clean(self) -> dict[str, Any]:
        """Every refusal at once: the checklist's answers, then contradictions between them and the subject."""
        cleaned = super().clean() or {}
        for name, kind, _ in self.criteria:
            answer = cleaned.get(name)
            if not answer:
                self.add_error(name, f"{kind.capitalize()} criterion not answered.")
            elif kind == "inclusion" and answer != "yes":
                self.add_error(name, "Inclusion criterion not met: the subject is not eligible.")
            elif kind == "exclusion" and answer != "no":
                self.add_error(name, "Exclusion criterion applies: the subject is not eligible.")
        problems = subject_fact_problems(
            inclusion=list(self.trial.inclusion_criteria),
            exclusion=list(self.trial.exclusion_criteria),
            answers=self.eligibility(),
            age=cleaned.get("age"),
            diabetes_type=cleaned.get("diabetes_type"),
            diabetes_duration_years=cleaned.get("diabetes_duration_years"),
        )
        for field, messages in problems.items():
            for message in messages:
                self.add_error(field, message)
        return cleaned

    def clean_consent_date(self):
        value = self.cleaned_data.get("consent_date")
        if value and value > timezone.localdate():
            raise forms.ValidationError("The consent date cannot be in the future.")
        return value


class WithdrawForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), label="Reason for withdrawal", max_length=limits.REASON
    )


class CaseForm(forms.Form):
    laterality = forms.ChoiceField(
        choices=CHOOSE + Laterality.choices, label="Eye", error_messages={"required": "Choose the eye."}
    )
    visit_day = forms.IntegerField(min_value=0, max_value=36500, initial=0, help_text="Days since enrolment.")


class CaseRnflForm(forms.Form):
    thickness_um = forms.FloatField(
        required=False,
        label="Average RNFL thickness (um)",
        help_text="As the OCT device's report gives it; leave empty to clear (with a reason).",
    )
    reason = forms.CharField(
        required=False, max_length=limits.REASON, help_text="Required to change or clear a recorded value."
    )


class CaseStatusForm(forms.Form):
    status = forms.ChoiceField(choices=CaseStatus.choices)
    reason = forms.CharField(required=False, max_length=limits.REASON, help_text="Required to exclude or to reopen.")


class CaseFileChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.get_modality_display()} uploaded {obj.created_at:%Y-%m-%d %H:%M} ({obj.sha256[:8]})"


class DataQueryRaiseForm(forms.Form):
    case_file = CaseFileChoiceField(
        queryset=CaseFile.objects.none(), required=False, empty_label="The case as a whole", label="About"
    )
    text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), label="Question for the site", max_length=limits.TEXT
    )

    def __init__(self, *args: Any, files: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        case_file = self.fields["case_file"]
        assert isinstance(case_file, forms.ModelChoiceField)
        if files is not None:
            case_file.queryset = files


class DataQueryStepForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=limits.TEXT)


class CaseFileRetireForm(forms.Form):
    """Withdraw a file, or mark it superseded by a newer upload of the case (``replacement``)."""

    action = forms.ChoiceField(
        choices=[("withdraw", "Withdraw (a wrong file)"), ("supersede", "Replaced by a newer upload")],
        widget=forms.RadioSelect,
    )
    replacement = forms.ChoiceField(required=False, label="Replaced by", help_text="A newer file of the same kind.")
    reason = forms.CharField(max_length=500, help_text="Why; it is kept in the audit trail.")

    def __init__(self, *args: Any, replacements: list[tuple[str, str]] = (), **kwargs: Any) -> None:  # type: ignore[assignment]
        super().__init__(*args, **kwargs)
        replacement = self.fields["replacement"]
        assert isinstance(replacement, forms.ChoiceField)
        replacement.choices = [("", "—"), *replacements]
        if not replacements:
            replacement.help_text = "No newer file of the same kind yet: upload the replacement first."

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("action") == "supersede" and not data.get("replacement"):
            self.add_error("replacement", "Choose the file that replaces this one (upload it first).")
        return data
