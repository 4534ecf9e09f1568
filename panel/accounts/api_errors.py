"""One exception handler for the API: every error is JSON with a human ``detail`` message.

Validation errors keep DRF's per-field lists (what clients of the hosting API expect) and add a
one-line ``detail`` that names the problem.
"""

from __future__ import annotations

from rest_framework.views import exception_handler as drf_exception_handler


def _flatten(errors, prefix: str = "") -> list[str]:
    if isinstance(errors, dict):
        lines: list[str] = []
        for field, value in errors.items():
            label = field if field != "non_field_errors" else ""
            lines += _flatten(value, f"{prefix}{label}: " if label else prefix)
        return lines
    if isinstance(errors, list):
        return [line for item in errors for line in _flatten(item, prefix)]
    return [f"{prefix}{errors}"]


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, dict) and "detail" not in data:
        response.data = {"detail": "; ".join(_flatten(data)), **data}
    elif isinstance(data, list):
        response.data = {"detail": "; ".join(_flatten(data))}
    return response
