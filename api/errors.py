"""One table from domain errors to RFC 9457 problem+json; validation errors are 422 with fields."""

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dispatch import errors as e

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"

STATUS_BY_ERROR: list[tuple[type[e.DomainError], int]] = [
    (e.IdempotencyConflict, 409),
    (e.WeakPassword, 422),
    (e.AccountDisabled, 403),
    (e.RefreshTokenReused, 401),
    (e.IllegalTransition, 409),
    (e.Conflict, 409),
    (e.CertificationNotUsable, 422),
    (e.InvalidInput, 422),
    (e.NotFound, 404),
    (e.Forbidden, 403),
    (e.AuthenticationFailed, 401),
    (e.TooManyAttempts, 429),
]

_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 409: "Conflict", 413: "Payload too large",
           415: "Unsupported media type", 422: "Unprocessable content", 429: "Too many requests",
           500: "Internal server error"}


def problem(status: int, slug: str, detail: str, **extra: object) -> JSONResponse:
    body = {"type": f"/problems/{slug}", "title": _TITLES.get(status, "Error"), "status": status,
            "detail": detail, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def status_for(exc: e.DomainError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 400


def install(app: FastAPI) -> None:
    @app.exception_handler(e.DomainError)
    async def _domain(request: Request, exc: e.DomainError) -> JSONResponse:
        response = problem(status_for(exc), exc.slug, exc.detail, **getattr(exc, "extra", {}))
        if isinstance(exc, e.TooManyAttempts):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg", ""), "type": err.get("type", "")}
            for err in exc.errors()
        ]
        return problem(422, "validation-error", "the request is not valid", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed", 401: "authentication-failed",
                403: "forbidden", 413: "payload-too-large"}.get(exc.status_code, "http-error")
        response = problem(exc.status_code, slug, str(exc.detail))
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request.unhandled_error", path=request.url.path)
        return problem(500, "internal-error", "an unexpected error occurred; it has been logged")
