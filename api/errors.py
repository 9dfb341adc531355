"""One table from domain errors to RFC 9457 problem+json; validation errors are 422 with fields;
an unreachable database or Redis is 503 with Retry-After, anything else unexpected 500."""

import structlog
from asyncpg import PostgresError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis import exceptions as redis_errors
from sqlalchemy import exc as sa_errors
from starlette.exceptions import HTTPException as StarletteHTTPException

from dispatch import errors as e
from kit import errors as k

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
# A client's pause before trying again while a backing service is down: long enough for a
# restart or a failover, short enough that a user keeps waiting.
RETRY_AFTER_S = 5
# PostgreSQL error classes that mean "cannot serve now", not "bad request": connection
# exceptions, invalid authorization (a wrong password in the URL), too many connections,
# operator intervention (shutdown, pg_terminate_backend).
_UNAVAILABLE_SQLSTATES = ("08", "28", "53300", "57P")

STATUS_BY_ERROR: list[tuple[type[k.DomainError], int]] = [
    (k.IdempotencyConflict, 409),
    (e.WeakPassword, 422),
    (e.AccountDisabled, 403),
    (e.RefreshTokenReused, 401),
    (e.IllegalTransition, 409),
    (e.CertificationNotPending, 409),
    (e.PhotoUnsupportedType, 415),
    (e.PhotoTooLarge, 413),
    (e.PhotoNotAnImage, 422),
    (e.PhotoTypeMismatch, 422),
    (e.PhotoBadDimensions, 422),
    (k.Conflict, 409),
    (e.CertificationNotUsable, 422),
    (k.InvalidInput, 422),
    (k.NotFound, 404),
    (k.Forbidden, 403),
    (e.AuthenticationFailed, 401),
    (k.TooManyAttempts, 429),
    (k.NotReady, 409),
    (k.ServiceUnavailable, 503),
]

# Slugs for HTTP errors the framework raises (an unknown route, a wrong method), not a DomainError.
HTTP_SLUGS = {404: "not-found", 405: "method-not-allowed", 401: "authentication-failed", 403: "forbidden",
              413: "payload-too-large"}
OTHER_HTTP_SLUG = "http-error"

_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 409: "Conflict", 413: "Payload too large",
           415: "Unsupported media type", 422: "Unprocessable content", 429: "Too many requests",
           500: "Internal server error", 503: "Service unavailable"}


def problem(status: int, slug: str, detail: str, **extra: object) -> JSONResponse:
    body = {"type": f"/problems/{slug}", "title": _TITLES.get(status, "Error"), "status": status,
            "detail": detail, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def domain_problem(exc: k.DomainError) -> JSONResponse:
    """The problem for a domain error: its slug and its structured fields (`exc.extra`), from
    which the apps word the message in the user's language."""
    response = problem(status_for(exc), exc.slug, exc.detail, **exc.extra)
    if isinstance(exc, k.TooManyAttempts | k.ServiceUnavailable):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


def status_for(exc: k.DomainError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 400


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, what it wraps (SQLAlchemy's `orig`) and its causes and contexts."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        item = todo.pop()
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        todo += [getattr(item, "orig", None), item.__cause__, item.__context__]
    return seen


def _raised_in_driver(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if "/asyncpg/" in filename or "/sqlalchemy/" in filename:
            return True
        tb = tb.tb_next
    return False


def unavailable_service(exc: BaseException) -> str | None:
    """"database" or "redis" when `exc` says that one cannot be reached now, else None."""
    chain = _chain(exc)
    if any(isinstance(item, (redis_errors.ConnectionError, redis_errors.TimeoutError)) for item in chain):
        return "redis"
    for item in chain:
        if isinstance(item, sa_errors.DBAPIError) and item.connection_invalidated:
            return "database"
        if isinstance(item, sa_errors.TimeoutError):  # no pooled connection came free in time
            return "database"
        sqlstate = getattr(item, "sqlstate", None)
        if isinstance(item, PostgresError) or sqlstate:
            if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
                return "database"
        elif isinstance(item, OSError) and _raised_in_driver(item):  # refused, unknown host, timed out
            return "database"
    return None


def unexpected(request: Request, exc: Exception) -> JSONResponse:
    """The answer to an exception no route handled: 503 with Retry-After when a backing service
    is down (the client should come back), else 500. Both are logged with the request's id."""
    service = unavailable_service(exc)
    if service is not None:
        log.warning("request.service_unavailable", service=service, path=request.url.path,
                    error=type(exc).__name__)
        response = problem(503, "service-unavailable", f"{service} unavailable; try again shortly",
                           service=service, retry_after_s=RETRY_AFTER_S)
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
    log.exception("request.unhandled_error", path=request.url.path, exc_info=exc)
    return problem(500, "internal-error", "an unexpected error occurred; it has been logged")


def install(app: FastAPI) -> None:
    @app.exception_handler(k.DomainError)
    async def _domain(request: Request, exc: k.DomainError) -> JSONResponse:
        return domain_problem(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg", ""), "type": err.get("type", "")}
            for err in exc.errors()
        ]
        return problem(422, "validation-error", "the request is not valid", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = HTTP_SLUGS.get(exc.status_code, OTHER_HTTP_SLUG)
        response = problem(exc.status_code, slug, str(exc.detail))
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Reached only by errors raised outside the access-log middleware, which answers the rest.
        return unexpected(request, exc)
