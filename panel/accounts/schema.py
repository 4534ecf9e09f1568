"""OpenAPI description of the token scheme (drf-spectacular extension, loaded in ready())."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "panel.accounts.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>`; create keys on the account page or with "
            "`manage.py create_token <username>`.",
        }


# --- what every operation can answer ----------------------------------------------------------

# ``detail`` is never blank: the one error handler always says what went wrong.
_DETAIL = {"type": "string", "minLength": 1, "pattern": r"\S"}
ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error: a human message.",
    "properties": {"detail": _DETAIL},
    "required": ["detail"],
    "additionalProperties": False,
}
VALIDATION_ERROR_SCHEMA = {
    "type": "object",
    "description": "A refused input: the one-line message and the per-field messages.",
    "properties": {"detail": _DETAIL},
    "required": ["detail"],
    "additionalProperties": {"type": "array", "items": _DETAIL},
}
_ERRORS = {
    "400": ("ValidationError", "The input was refused: the message names the field and why"),
    "401": ("Error", "No credentials, or bad ones (`WWW-Authenticate: Token`)"),
    "403": ("Error", "Not allowed: staff only, or a session write without its CSRF token"),
    "404": ("Error", "No such object of yours (someone else's looks the same)"),
    "405": ("Error", "Method not allowed on this path"),
    "415": ("Error", "The body's media type is not JSON, form or multipart"),
    "429": ("Error", "Too many requests; see `Retry-After`"),
}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _statuses(path: str, operation: dict) -> list[str]:
    """The error statuses an operation can answer, from what it takes."""
    statuses = ["401", "403", "405"]
    params = operation.get("parameters", [])
    if "requestBody" in operation or any(p.get("in") == "query" for p in params):
        statuses.append("400")
    if "{" in path:
        statuses.append("404")
    if "requestBody" in operation:
        statuses.append("415")
    return statuses


def _close_objects(schema: object) -> None:
    """``additionalProperties: false`` on every object schema that lists its properties."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _close_objects(value)
    elif isinstance(schema, list):
        for item in schema:
            _close_objects(item)


def describe_errors(result, generator, request, public):
    """drf-spectacular postprocessing hook: the error answers of every operation, and closed
    objects (a field nobody knows is refused, and the answers hold only what they list).

    An operation's own description of a status (the reload's 429 and 502) is kept; one that
    gave only a description gets the error body.
    """
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    _close_objects(schemas)
    schemas["Error"] = ERROR_SCHEMA
    schemas["ValidationError"] = VALIDATION_ERROR_SCHEMA
    for path, methods in result.get("paths", {}).items():
        for operation in methods.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for code in _statuses(path, operation) + [c for c in responses if c in _ERRORS]:
                name, description = _ERRORS[code]
                response = responses.setdefault(code, {"description": description})
                response.setdefault("content", {"application/json": {"schema": _ref(name)}})
    return result
