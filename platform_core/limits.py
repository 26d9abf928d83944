"""Size limits of what people type or send: every free-text field and every list a form or an API accepts.

One table, used by the page forms, the API's serializers and the services that store the values (so a command or
an import is held to the same limits). A value over its limit is a field error and nothing is written.
``tests/platform_core/test_input_limits.py`` walks every form and serializer of the project and fails on a
writable text or list field without a bound.

The database columns are unchanged (``TextField`` and ``JSONField`` stay unbounded, no migration): the bounds are
checked where values come in, so no stored row is rewritten. A row stored before these limits with a value over
one (a trial with 5,000 criteria) is read as it is; saving it again through its service is refused until it fits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError

NAME = 200  # a person's, model's or data set's name, a title
CODE = 100  # an identifier typed by hand: a version, a group, a filter value
EMAIL = 254  # RFC 5321's limit on an address
PASSWORD = 4096  # Django's former MAXIMUM_PASSWORD_LENGTH: hashing stays cheap, every real password fits
REASON = 2000  # a reason or comment kept in the audit trail
TEXT = 4000  # a question or an answer in a data query, a paragraph of a model card
DOCUMENT = 20000  # a JSON configuration or a model card pasted whole
AUDIT_REASON = 4000  # the audit trail's own ceiling on a reason, whatever wrote it

CRITERIA = 100  # eligibility criteria per list (inclusion, exclusion)
CRITERION = 500  # characters per criterion
LIST_ITEMS = 100  # items of any other list (a trial's extra reader groups, ...)
MAPPING_ITEMS = 100  # keys of a mapping of answers: a reading form has far fewer questions
MAPPING_KEY = 100  # characters of a key (a question's name)
MAPPING_VALUE = 200  # characters of a text value (an answer's code)
MARKS_PER_READ = 300  # lesion marks on one read
JSON_ITEMS = 1000  # values (lists, objects and scalars, all levels) of a JSON document typed in a form


def text_problem(value: object, limit: int, what: str = "This text") -> str | None:
    """The message for a text over ``limit`` characters, or None."""
    if isinstance(value, str) and len(value) > limit:
        return f"{what} has {len(value):,} characters; at most {limit:,} are allowed."
    return None


def check_text(value: object, limit: int, field: str, what: str = "This text") -> None:
    """Raise a ValidationError on ``field`` for a text over ``limit`` characters."""
    problem = text_problem(value, limit, what)
    if problem:
        raise ValidationError({field: problem})


def list_problem(
    value: object, *, items: int, item_length: int, plural: str = "items", singular: str = "Item"
) -> str | None:
    """The message for a list of more than ``items`` entries, or with a text entry over ``item_length``."""
    if not isinstance(value, list | tuple):
        return None
    if len(value) > items:
        return f"{len(value):,} {plural} given; at most {items:,} are allowed."
    for number, item in enumerate(value, start=1):
        if isinstance(item, str) and len(item) > item_length:
            return f"{singular} {number} has {len(item):,} characters; at most {item_length:,} are allowed."
    return None


def mapping_problem(
    value: object, *, items: int = MAPPING_ITEMS, key_length: int = MAPPING_KEY, value_length: int = MAPPING_VALUE
) -> str | None:
    """The message for a mapping with more than ``items`` keys, a key or text value too long, or a value that is
    not a scalar (text, number, true/false or null); None when it fits."""
    if not isinstance(value, Mapping):
        return None
    if len(value) > items:
        return f"{len(value):,} entries given; at most {items:,} are allowed."
    for key, item in value.items():
        if len(str(key)) > key_length:
            return f"A key has {len(str(key)):,} characters; at most {key_length:,} are allowed."
        if isinstance(item, Mapping | list | tuple):
            return f"The value of {str(key)!r} must be a single value (text, number, true/false or null)."
        if isinstance(item, str) and len(item) > value_length:
            return f"The value of {str(key)!r} has {len(item):,} characters; at most {value_length:,} are allowed."
    return None


def json_size(value: Any, ceiling: int = JSON_ITEMS) -> int:
    """How many values (objects, lists and scalars, at every level) ``value`` holds, counting stops past
    ``ceiling`` (so a huge document costs no more than the ceiling)."""
    count, stack = 0, [value]
    while stack and count <= ceiling:
        item = stack.pop()
        count += 1
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return count


def json_problem(value: Any, ceiling: int = JSON_ITEMS) -> str | None:
    """The message for a JSON document of more than ``ceiling`` values, or None."""
    if json_size(value, ceiling) > ceiling:
        return f"The JSON holds more than {ceiling:,} values; at most {ceiling:,} are allowed."
    return None


def bound_json_form_fields(fields: Mapping[str, Any], items: int = LIST_ITEMS) -> None:
    """Give a model form's generated JSON fields a bound: at most ``items`` entries at the top level (the model's
    validators check the entries themselves)."""
    from django import forms

    for field in fields.values():
        if isinstance(field, forms.JSONField) and field.max_length is None:
            field.max_length = items
            field.validators.append(_at_most_entries(items))


def _at_most_entries(items: int) -> Any:
    """A validator: a JSON list or object of at most ``items`` entries. Other values (a number, true, a string) are
    left to the model's own validators, which say what the field must be."""
    from django.core.exceptions import ValidationError

    def validate(value: Any) -> None:
        if isinstance(value, list | dict) and len(value) > items:
            raise ValidationError(f"At most {items:,} entries are allowed; this has {len(value):,}.", code="max_length")

    return validate
