"""Page forms of blind reading: the trial's reading form (answers and 0-100 confidences) and signatures."""

from __future__ import annotations

from typing import Any

from django import forms

from platform_core import limits
from reading import services
from reading.forms_core import answer_questions, diagnostic_questions
from reading.models import DEFAULT_WASHOUT_DAYS, GROUP_LENGTH, Crossing, Phase
from trials.models import ReadingDesign, Trial
from trials.reading_form import CATALOGUE


class ReadForm(forms.Form):
    """Built from the trial's reading form: one field per question, one 0-100 confidence per diagnostic one."""

    version = forms.IntegerField(widget=forms.HiddenInput)
    seconds = forms.IntegerField(widget=forms.HiddenInput, required=False, min_value=0)

    def __init__(self, *args: Any, questions: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.questions = answer_questions(questions)
        self.diagnostic = diagnostic_questions(questions)
        for key in self.questions:
            q = CATALOGUE[key]
            if q.kind in ("choice", "boolean"):
                self.fields[f"q_{key}"] = forms.ChoiceField(
                    label=q.label, choices=[("", "—"), *q.choices], required=False
                )
            else:
                self.fields[f"q_{key}"] = forms.IntegerField(
                    label=q.label, min_value=q.minimum, max_value=q.maximum, required=False
                )
            if key in self.diagnostic:
                self.fields[f"c_{key}"] = forms.IntegerField(
                    label=f"Confidence: {q.label} (0-100)", min_value=0, max_value=100, required=False
                )

    @staticmethod
    def initial_for(read: Any) -> dict[str, Any]:
        initial: dict[str, Any] = {"version": read.version, "seconds": 0}
        initial |= {f"q_{k}": v for k, v in read.answers.items()}
        initial |= {f"c_{k}": v for k, v in read.confidences.items()}
        return initial

    def answers(self) -> dict[str, Any]:
        return {
            key: self.cleaned_data[f"q_{key}"]
            for key in self.questions
            if self.cleaned_data.get(f"q_{key}") not in (None, "")
        }

    def confidences(self) -> dict[str, Any]:
        return {
            key: self.cleaned_data[f"c_{key}"]
            for key in self.diagnostic
            if self.cleaned_data.get(f"c_{key}") is not None
        }


class IdentityMixin:
    """The first signing of a session asks for the e-mail address as well (``identity=True``); later ones the
    password only (reading.signing)."""

    fields: dict[str, forms.Field]
    cleaned_data: dict[str, Any]

    def add_identity(self, identity: bool) -> None:
        if identity:
            self.fields = {
                "username": forms.CharField(
                    label="Your e-mail address (first signature of this session)",
                    widget=forms.EmailInput(attrs={"autocomplete": "username"}),
                    max_length=limits.EMAIL,
                ),
                **self.fields,
            }

    def username(self) -> str | None:
        return self.cleaned_data.get("username") if "username" in self.fields else None


class SignForm(IdentityMixin, forms.Form):
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}), max_length=limits.PASSWORD
    )
    meaning = forms.ChoiceField(choices=[(m, m) for m in services.MEANINGS["read"]])

    def __init__(self, *args: Any, identity: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_identity(identity)


class AmendForm(IdentityMixin, ReadForm):
    """A signed read's new answers, the reason, and a new signature."""

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), max_length=limits.REASON, help_text="Why the signed read changes."
    )
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}), max_length=limits.PASSWORD
    )
    meaning = forms.ChoiceField(choices=[(m, m) for m in services.MEANINGS["amend"]])

    def __init__(self, *args: Any, identity: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_identity(identity)
        for name in ("reason", "password", "meaning"):  # after the questions, as the reader reads them
            self.fields[name] = self.fields.pop(name)


class ResetForm(forms.Form):
    read = forms.UUIDField(widget=forms.HiddenInput)
    reason = forms.CharField(max_length=500, help_text="Why the reader's unsigned work is discarded.")


class LockForm(IdentityMixin, forms.Form):
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}), max_length=limits.PASSWORD
    )
    meaning = forms.ChoiceField(choices=[(m, m) for m in services.MEANINGS["lock"]])

    def __init__(self, *args: Any, identity: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_identity(identity)


class CalibrationForm(forms.Form):
    """A case and its known answers (the trial's choice questions)."""

    def __init__(self, *args: Any, cases: Any, questions: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["case"] = forms.ModelChoiceField(queryset=cases, label="Case")
        self.questions = [k for k in answer_questions(questions) if CATALOGUE[k].kind in ("choice", "boolean")]
        for key in self.questions:
            q = CATALOGUE[key]
            self.fields[f"q_{key}"] = forms.ChoiceField(
                label=f"Known answer: {q.label}", choices=[("", "—"), *q.choices], required=False
            )

    def known_answers(self) -> dict[str, Any]:
        return {k: self.cleaned_data[f"q_{k}"] for k in self.questions if self.cleaned_data.get(f"q_{k}")}


class SetupForm(forms.Form):
    crossing = forms.ChoiceField(choices=Crossing.choices)
    readers_per_case = forms.IntegerField(min_value=1, initial=3)
    aided_phase = forms.BooleanField(required=False, label="AI-aided phase after a washout")
    washout_days = forms.IntegerField(min_value=0, initial=28)
    grade_gap = forms.IntegerField(min_value=1, initial=2, label="Grades this far apart are discordant")
    stale_after_days = forms.IntegerField(
        min_value=1, max_value=365, initial=7, label="Flag a reader who has not read for this many days"
    )


def setup_initial_from_protocol(trial: Trial) -> dict[str, Any]:
    """The design form's first values before a set-up is saved: the trial protocol's readers per case, whether its
    reading design has an AI-aided phase, and its washout (28 days when the protocol gives none)."""
    aided = trial.reading_design == ReadingDesign.UNAIDED_THEN_AIDED
    return {
        "readers_per_case": trial.readers_per_case,
        "aided_phase": aided,
        "washout_days": trial.washout_days if aided and trial.washout_days else DEFAULT_WASHOUT_DAYS,
    }


class AssignForm(forms.Form):
    reader = forms.EmailField(label="Reader's email", max_length=limits.EMAIL)
    phase = forms.ChoiceField(choices=Phase.choices)
    group = forms.CharField(
        max_length=GROUP_LENGTH, help_text="resident, attending, specialist, optometrist, general_physician"
    )


class AdjudicationForm(IdentityMixin, forms.Form):
    version = forms.IntegerField(widget=forms.HiddenInput)
    icdr_grade = forms.ChoiceField(choices=[("", "—"), *CATALOGUE["icdr_grade"].choices], required=False)
    glaucoma = forms.ChoiceField(choices=[("", "—"), *CATALOGUE["glaucoma"].choices], required=False)
    reason = forms.CharField(
        required=False, max_length=limits.REASON, help_text="Needed once signed or after the reference lock."
    )
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}), max_length=limits.PASSWORD
    )
    meaning = forms.ChoiceField(choices=[(m, m) for m in services.MEANINGS["adjudicate"]])

    def __init__(self, *args: Any, identity: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_identity(identity)
