"""Serializer fields with the size limits of ``platform_core.limits`` (DRF's DictField has no bound of its own)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

from platform_core import limits


class BoundedDictField(serializers.DictField):
    """An object of at most ``max_items`` keys of at most ``max_key_length`` characters, whose values are single
    values (text of at most ``max_value_length`` characters, numbers, true/false, null)."""

    def __init__(
        self,
        *,
        max_items: int = limits.MAPPING_ITEMS,
        max_key_length: int = limits.MAPPING_KEY,
        max_value_length: int = limits.MAPPING_VALUE,
        **kwargs: Any,
    ) -> None:
        self.max_items = max_items
        self.max_key_length = max_key_length
        self.max_value_length = max_value_length
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> dict[Any, Any]:
        problem = limits.mapping_problem(
            data, items=self.max_items, key_length=self.max_key_length, value_length=self.max_value_length
        )
        if problem:
            raise serializers.ValidationError(problem, code="too_large")
        return super().to_internal_value(data)


class BoundedDictFieldSchema(OpenApiSerializerFieldExtension):
    """The schema states the bounds: ``maxProperties``, and single values of bounded text."""

    target_class = BoundedDictField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> Any:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        schema["maxProperties"] = self.target.max_items
        if schema.get("additionalProperties") in ({}, True):
            schema["additionalProperties"] = {
                "nullable": True,
                "oneOf": [
                    {"type": "string", "maxLength": self.target.max_value_length},
                    {"type": "number"},
                    {"type": "boolean"},
                ],
            }
        return schema
