"""Forms of the model registry's pages: a model card in plain fields, never raw JSON."""

from __future__ import annotations

import json
import math
from typing import Any

from django import forms

from diagnosis.models import Architecture
from platform_core import limits


def parse_metrics(text: str) -> dict[str, float]:
    """``name: value`` lines (``auc: 0.91``) into a mapping; a line that is not one raises ValueError."""
    metrics: dict[str, float] = {}
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"line {number} is not “name: value”")
        try:
            figure = float(value.strip())
        except ValueError:
            raise ValueError(f"line {number}: {value.strip()!r} is not a number") from None
        if not math.isfinite(figure):
            raise ValueError(f"line {number}: {value.strip()!r} is not a finite number")
        metrics[name.strip()] = figure
    return metrics


class ModelRegisterForm(forms.Form):
    name = forms.CharField(label="Model name", max_length=100, help_text="e.g. dr-screening; versions share it.")
    version = forms.CharField(label="Version", max_length=40)
    checkpoint = forms.FileField(label="Checkpoint", help_text="torch.save file: a Visus checkpoint or a state dict.")
    architecture = forms.ChoiceField(
        label="Architecture",
        required=False,
        choices=[("", "As the checkpoint says"), *Architecture.choices],
        help_text="Needed only for a plain state dict.",
    )
    config = forms.CharField(
        label="Architecture configuration (JSON)",
        required=False,
        max_length=limits.DOCUMENT,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Needed only for a plain state dict.",
    )
    sha256 = forms.CharField(
        label="Expected SHA-256",
        required=False,
        max_length=limits.CODE,
        help_text="As published with the weights; refused if it differs.",
    )
    intended_use = forms.CharField(
        label="Intended use", widget=forms.Textarea(attrs={"rows": 3}), max_length=limits.TEXT
    )
    training_data = forms.CharField(
        label="Training data", widget=forms.Textarea(attrs={"rows": 3}), max_length=limits.TEXT
    )
    metrics = forms.CharField(
        label="Metrics",
        required=False,
        max_length=limits.TEXT,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One per line, “name: value”, e.g. “auc: 0.91”.",
    )
    metrics_dataset = forms.CharField(
        label="Data set of the metrics",
        required=False,
        max_length=300,
        help_text="Where the metrics were measured, e.g. “held-out 20% of the training set, 412 images”.",
    )
    limitations = forms.CharField(label="Limitations", widget=forms.Textarea(attrs={"rows": 3}), max_length=limits.TEXT)
    not_for_clinical_use = forms.BooleanField(
        label="Not for clinical use", required=False, initial=True, help_text="Shown as a banner on the model card."
    )

    def clean_metrics(self) -> dict[str, float]:
        try:
            return parse_metrics(self.cleaned_data.get("metrics") or "")
        except ValueError as exc:
            raise forms.ValidationError(f"Metrics: {exc}.") from None

    def clean_config(self) -> dict[str, Any] | None:
        text = (self.cleaned_data.get("config") or "").strip()
        if not text:
            return None
        try:
            config = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}.") from None
        except RecursionError:
            raise forms.ValidationError("Not valid JSON: it is nested too deeply.") from None
        if not isinstance(config, dict):
            raise forms.ValidationError("The configuration must be a JSON object.")
        problem = limits.json_problem(config)
        if problem:
            raise forms.ValidationError(problem)
        return config

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("metrics") and not (cleaned.get("metrics_dataset") or "").strip():
            self.add_error("metrics_dataset", "Name the data set the metrics were measured on.")
        return cleaned

    def model_card(self) -> dict[str, Any]:
        data = self.cleaned_data
        card: dict[str, Any] = {
            "intended_use": data["intended_use"].strip(),
            "training_data": data["training_data"].strip(),
            "metrics": data["metrics"],
            "limitations": data["limitations"].strip(),
            "not_for_clinical_use": bool(data["not_for_clinical_use"]),
        }
        if data.get("metrics_dataset"):
            card["metrics_dataset"] = data["metrics_dataset"].strip()
        return card


class ModelStatusForm(forms.Form):
    status = forms.ChoiceField(choices=[("active", "Activate"), ("retired", "Retire")], widget=forms.HiddenInput)
    reason = forms.CharField(label="Reason", max_length=500, help_text="Recorded in the audit trail.")
