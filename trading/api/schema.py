"""The API's error answers, declared once for every operation of the OpenAPI schema.

Every error is the same JSON shape (`trading.api.errors`): `{"error": "...", "fields": {...}?}`.
An operation may answer 400 (bad parameters or body), 401/403 (no or insufficient credentials),
404 (unknown coin or order), 405, 413 (body too large), 415 (not JSON), 429 (rate limited); the live
reads answer 503 while what they report is not available yet (no metrics, no rate, a component
down: `/health` then carries its usual body with `problems`). A drf-spectacular post-processing
hook adds them, so the schema and the answers come from one definition.
"""

from __future__ import annotations

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "detail": {"type": "string"},
        "fields": {"description": "the refused fields and why (an object, or a list for a list body)"},
    },
    "required": ["error"],
}
_CLIENT_ERRORS = {
    "400": "Bad parameters or body",
    "401": "Credentials missing or invalid",
    "403": "Not permitted",
    "404": "Not found",
    "405": "Method not allowed",
    "413": "Request body too large",
    "415": "Unsupported media type",
    "429": "Rate limited",
}
# Reads that report live state answer 503 while it is not available (no metrics, no rate yet).
_UNAVAILABLE = ("/health", "/metrics/live", "/pnl", "/equity/history")


def add_error_responses(result, generator, request, public):
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Error", ERROR_SCHEMA)
    ref = {"$ref": "#/components/schemas/Error"}
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if method.lower() not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            for code, text in _CLIENT_ERRORS.items():
                responses.setdefault(code, {"description": text, "content": {"application/json": {"schema": ref}}})
            if path.startswith(_UNAVAILABLE):
                ok = responses.get("200", {}).get("content", {}).get("application/json", {}).get("schema")
                schema = {"oneOf": [ok, ref]} if ok and path == "/health" else ref
                responses.setdefault("503", {"description": "Not available yet, or a component is down",
                                             "content": {"application/json": {"schema": schema}}})
    return result
