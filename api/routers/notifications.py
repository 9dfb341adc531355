import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from api.deps import CurrentPrincipal, SessionDep, require_role
from api.ws.protocol import json_schema
from dispatch import notifications
from kit.errors import NotFound
from kit.schemas import Page
from dispatch.security import Principal

router = APIRouter(tags=["notifications"])


class NotificationPublic(BaseModel):
    id: uuid.UUID
    kind: str
    title: str
    body: str
    payload: dict[str, Any]
    created_at: datetime
    read_at: datetime | None


@router.get("/v1/notifications")
async def list_notifications(
    principal: CurrentPrincipal, session: SessionDep, unread: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[NotificationPublic]:
    rows, next_cursor = await notifications.list_for(session, principal.account_id, unread_only=unread, limit=limit, cursor=cursor)
    return Page(data=[NotificationPublic.model_validate(n, from_attributes=True) for n in rows], next_cursor=next_cursor)


@router.post("/v1/notifications/{notification_id}/read")
async def mark_read(
    notification_id: uuid.UUID, session: SessionDep,
    principal: Annotated[Principal, Depends(require_role("customer", "technician", "admin"))],
) -> dict[str, str]:
    """Auditors never write, not even read marks."""
    if not await notifications.mark_read(session, principal.account_id, notification_id):
        raise NotFound("no such unread notification")
    return {"id": str(notification_id), "status": "read"}


@router.get("/v1/ws/schema", tags=["realtime"])
async def websocket_schema() -> dict[str, Any]:
    """JSON Schema of the websocket messages (version 1)."""
    return json_schema()
