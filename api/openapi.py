"""The OpenAPI document every client and the schemathesis run rely on: each operation documents
its client errors as application/problem+json (RFC 9457), the shape api/errors.py writes."""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.errors import PROBLEM_JSON

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "description": "/problems/<slug>; the apps translate the slug"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}, "description": "field problems (422)"},
    },
}
_PROBLEM_CONTENT = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
# Statuses any operation can answer: bad or oversized bodies, auth, missing ids, conflicts,
# validation, throttling, a backing service down.
_PROBLEMS = {
    "400": "Malformed request", "401": "Missing, invalid or expired token", "403": "Not allowed for this caller",
    "404": "No such resource (or not the caller's)", "409": "Conflict with the current state",
    "413": "Request body too large", "422": "Invalid input (problem+json with `errors`)",
    "429": "Too many requests (see Retry-After)",
    "503": "The database or Redis is unavailable, or the service is not ready (see Retry-After)",
}


def _document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for status, description in _PROBLEMS.items():
                documented = responses.setdefault(status, {"description": description})
                if documented.get("description") in (None, "", "Validation Error", "Successful Response"):
                    documented["description"] = description
                documented["content"] = _PROBLEM_CONTENT
    return schema


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document_problems(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
