import hmac
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from api.deps import RedisDep, SessionDep
from api.errors import unavailable_service
from api.observability import metrics_response, refresh_marketplace_gauges
from kit.config import get_settings
from dispatch.errors import AuthenticationFailed
from kit.errors import NotFound
from kit.jobs import engine_health

router = APIRouter(tags=["health"])


@router.get("/v1/health/live")
async def live() -> dict[str, str]:
    """The process answers; the lifespan's start-up check kept it from starting without its
    database and Redis."""
    return {"status": "ok"}


def _backbone_checks(backbone: dict[str, Any]) -> dict[str, str]:
    settings = get_settings()
    checks: dict[str, str] = {}
    workers = backbone.get("workers", 0)
    checks["worker"] = "ok" if workers >= settings.health_min_workers else \
        f"error: {workers} of {settings.health_min_workers} workers have a fresh heartbeat"
    problems = []
    if backbone.get("dead_letters", 0) > settings.health_max_dead_letters:
        problems.append(f"{backbone['dead_letters']} dead letters (limit {settings.health_max_dead_letters})")
    oldest = backbone.get("oldest_ready_age_s") or 0
    if oldest > settings.health_max_ready_age_s:
        problems.append(f"oldest ready job waits {oldest:.0f} s (limit {settings.health_max_ready_age_s:g} s)")
    checks["engine"] = "ok" if not problems else "error: " + "; ".join(problems)
    return checks


@router.get("/v1/health")
async def ready(session: SessionDep, redis: RedisDep) -> JSONResponse:
    """Ready when PostgreSQL and Redis answer, enough workers beat, and the job backbone keeps up
    (dead letters and the oldest ready job's age under their limits)."""
    checks: dict[str, str] = {}
    try:
        await session.exec(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports, it does not raise
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        await redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    backbone: dict[str, Any] = {}
    try:
        backbone = await engine_health(session)
        checks.update(_backbone_checks(backbone))
    except Exception as exc:
        checks["engine"] = f"error: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if healthy else "degraded", **checks, "backbone": backbone},
                        status_code=200 if healthy else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, session: SessionDep) -> Response:
    """Prometheus scrape, behind GASDISPATCH_METRICS_TOKEN (absent when no token is set)."""
    token = get_settings().metrics_token
    if token is None:
        raise NotFound("metrics are not enabled on this install")
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise AuthenticationFailed("the metrics token is required")
    try:
        await refresh_marketplace_gauges(session)
    except Exception as exc:
        if unavailable_service(exc) is None:
            raise
        # the last counts stand: the scrape must work while the database is down
    return metrics_response()
