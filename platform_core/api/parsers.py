"""Request parsers that refuse hostile JSON with a 400 instead of crashing."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class SafeJSONParser(JSONParser):
    """DRF's JSON parser, with JSON nested deeper than Python's recursion limit refused as a parse error.

    ``json.load`` raises RecursionError (not ValueError) on ``[[[[...`` nested about a thousand deep, which DRF
    does not catch: without this any JSON endpoint, sign-in included, answered 500 to an anonymous caller.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type=media_type, parser_context=parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.") from None
