import hmac

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from api.deps import RedisDep, SessionDep
from api.observability import ORDERS_BY_STATE, metrics_response
from dispatch.config import get_settings
from dispatch.errors import AuthenticationFailed, NotFound

router = APIRouter(tags=["health"])


@router.get("/v1/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/v1/health")
async def ready(session: SessionDep, redis: RedisDep) -> JSONResponse:
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
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if healthy else "degraded", **checks}, status_code=200 if healthy else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, session: SessionDep) -> Response:
    """Prometheus scrape, behind GASDISPATCH_METRICS_TOKEN (absent when no token is set)."""
    token = get_settings().metrics_token
    if token is None:
        raise NotFound("metrics are not enabled on this install")
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise AuthenticationFailed("the metrics token is required")
    ORDERS_BY_STATE.clear()
    for status, count in (await session.exec(text("SELECT status, count(*) FROM dispatch_order GROUP BY status"))).all():
        ORDERS_BY_STATE.labels(status).set(count)
    return metrics_response()
