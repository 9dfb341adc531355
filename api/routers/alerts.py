"""Operations alerts: the duty dispatcher's open alerts and their acknowledgement."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import Admin, SessionDep
from api.routers.ops import CityFilter
from dispatch import alerts
from kit.schemas import Page

router = APIRouter(tags=["operations"])


class AlertPublic(BaseModel):
    id: uuid.UUID
    city_id: str
    order_id: uuid.UUID | None
    kind: str
    level: str
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: uuid.UUID | None
    details: dict[str, Any]


@router.get("/v1/ops/alerts")
async def list_alerts(
    admin: Admin, session: SessionDep, open: bool = True,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: Annotated[str | None, Query(max_length=200)] = None,
    city: CityFilter = None,
) -> Page[AlertPublic]:
    """Newest first; `open=false` includes acknowledged alerts; `?city=` one city's only (else
    every city's, for an operator who watches them all)."""
    rows, next_cursor = await alerts.list_alerts(session, open_only=open, limit=limit, cursor=cursor, city_id=city)
    return Page(data=[AlertPublic.model_validate(a, from_attributes=True) for a in rows], next_cursor=next_cursor)


@router.post("/v1/ops/alerts/{alert_id}/acknowledge")
async def acknowledge(alert_id: uuid.UUID, admin: Admin, session: SessionDep) -> AlertPublic:
    """Once: acknowledging an acknowledged alert is 409 alert-acknowledged."""
    alert = await alerts.acknowledge(session, alert_id, admin.account_id)
    return AlertPublic.model_validate(alert, from_attributes=True)
