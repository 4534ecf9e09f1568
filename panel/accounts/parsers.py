"""The API's JSON parser: DRF's, with a bound on nesting.

A JSON body nested deeper than the C parser's recursion limit (a 1 KB body of 1,000 ``[``) makes
``json.loads`` raise ``RecursionError``, which DRF does not catch: a 500. Here it is a 400, and
so is any body nested deeper than ``MAX_JSON_DEPTH`` (no API input is more than a few levels
deep). Too many form fields (``DATA_UPLOAD_MAX_NUMBER_FIELDS``) are answered by the one error
handler (``panel.accounts.api_errors``), since every parser of form bodies can raise them.
"""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_JSON_DEPTH = 32


def _too_deep(value: object, limit: int) -> bool:
    """True when ``value`` nests containers more than ``limit`` levels (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(
                f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep"
            ) from None
        if _too_deep(data, MAX_JSON_DEPTH):
            raise ParseError(f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep")
        return data
