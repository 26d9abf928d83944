"""The audit trail's filter form: person, action, date range, and the object filters apps register."""

from __future__ import annotations

from typing import Any

from django import forms

from platform_core.accounts.models import User
from platform_core.audit.selectors import AuditFilters, audit_object_filters, audit_people_for
from platform_core.audit.vocabulary import registered_actions


class PersonChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.full_name} ({obj.email})" if obj.full_name else obj.email


class AuditFilterForm(forms.Form):
    person = PersonChoiceField(queryset=User.objects.none(), required=False, empty_label="Anyone")
    action = forms.ChoiceField(required=False)
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        person = self.fields["person"]
        assert isinstance(person, forms.ModelChoiceField)
        person.queryset = audit_people_for(user)
        action = self.fields["action"]
        assert isinstance(action, forms.ChoiceField)
        action.choices = [("", "Any action")] + [
            (name, f"{name}: {entry.description}") for name, entry in sorted(registered_actions().items())
        ]
        for object_filter in audit_object_filters():
            self.fields[object_filter.name] = forms.CharField(
                required=False, max_length=100, label=object_filter.label, help_text=object_filter.help_text
            )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return data

    def filters(self) -> AuditFilters:
        data = self.cleaned_data
        return AuditFilters(
            actor=data.get("person"),
            action=data.get("action") or "",
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            objects={f.name: data[f.name].strip() for f in audit_object_filters() if data.get(f.name, "").strip()},
        )
