"""One exception handler for the API: every error is JSON with a human ``detail`` message.

Validation errors keep DRF's per-field lists (what clients of the hosting API expect) and add a
one-line ``detail`` that names the problem. A body Django refuses to parse (more form fields
than ``DATA_UPLOAD_MAX_NUMBER_FIELDS``, more files than ``DATA_UPLOAD_MAX_NUMBER_FILES``) is a
JSON 400 too, not Django's HTML page.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework.exceptions import ParseError
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
    if isinstance(exc, TooManyFieldsSent):
        exc = ParseError(
            f"too many form fields: at most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} are read"
        )
    elif isinstance(exc, TooManyFilesSent):
        exc = ParseError(f"too many files: at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES}")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, dict) and "detail" not in data:
        response.data = {"detail": "; ".join(_flatten(data)), **data}
    elif isinstance(data, list):
        response.data = {"detail": "; ".join(_flatten(data))}
    return response


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: a path under ``/api/`` that no route matches (``static_files/x/``, where
    an id is a number) answers JSON like every other API error; other paths get Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": f"No API endpoint at {request.path}."}, status=404)
    return defaults.page_not_found(request, exception)
