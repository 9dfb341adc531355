from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from api.deps import RedisDep, SessionDep
from api.observability import ORDERS_BY_STATE, metrics_response

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
async def metrics(session: SessionDep) -> Response:
    ORDERS_BY_STATE.clear()
    for status, count in (await session.exec(text("SELECT status, count(*) FROM dispatch_order GROUP BY status"))).all():
        ORDERS_BY_STATE.labels(status).set(count)
    return metrics_response()
