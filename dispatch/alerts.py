"""Operations alerts: what the duty dispatcher must act on (an emergency nobody accepted, an
offer round that lapsed). One open alert per (order, kind); an alert belongs to its order's city
(else the configured city), and each new or acknowledged alert is pushed on that city's
operations channel after the commit, where the ops consoles watching the city listen. A new
alert of an order also notifies the duty staff of the stations whose area holds the order.

Services flush, never commit.
"""

import uuid
from datetime import datetime, timezone
from typing import Any, Literal

from sqlalchemy import CheckConstraint, Column, Index, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.models import Order, city_id_field, home_city
from dispatch.notifications import notify
from dispatch.stations import duty_staff_at
from kit.errors import Conflict, NotFound
from kit.fanout import push_after_commit
from kit.models import timestamp_column, utcnow
from kit.pagination import page_of, paginate

LEVELS = ("critical", "warning")
Level = Literal["critical", "warning"]
OPS_ALERT = "ops_alert"  # the notification kind the duty staff receive


def ops_channel(city: str) -> str:
    return f"ops:{city}"


class OpsAlert(SQLModel, table=True):
    __tablename__ = "dispatch_ops_alert"
    __table_args__ = (
        CheckConstraint(f"level IN {LEVELS}", name="level"),
        # One open alert per order and kind: a second raise while it is open is the same alert.
        Index("uq_dispatch_ops_alert_open", "order_id", "kind", unique=True,
              postgresql_where=text("acknowledged_at IS NULL")),
        Index("ix_dispatch_ops_alert_open", "created_at", postgresql_where=text("acknowledged_at IS NULL")),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    city_id: str = city_id_field(index=True)
    order_id: uuid.UUID | None = Field(default=None, foreign_key="dispatch_order.id", index=True)
    kind: str = Field(max_length=40)
    level: str = Field(max_length=16)
    created_at: datetime = timestamp_column(default_factory=utcnow)
    acknowledged_at: datetime | None = timestamp_column(nullable=True, default=None)
    acknowledged_by: uuid.UUID | None = Field(default=None, foreign_key="dispatch_account.id")
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))


class AlertAlreadyAcknowledged(Conflict):
    """This alert was acknowledged already."""

    slug = "alert-acknowledged"


def alert_public(alert: OpsAlert) -> dict[str, Any]:
    """The alert as REST and the operations channel show it."""
    return {
        "id": str(alert.id), "city_id": alert.city_id, "order_id": str(alert.order_id) if alert.order_id else None,
        "kind": alert.kind, "level": alert.level, "created_at": alert.created_at.isoformat(),
        "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
        "acknowledged_by": str(alert.acknowledged_by) if alert.acknowledged_by else None, "details": alert.details,
    }


async def raise_alert(session: AsyncSession, *, kind: str, level: Level, order_id: uuid.UUID | None,
                      details: dict[str, Any], now: datetime | None = None, city_id: str | None = None) -> OpsAlert:
    """The open alert of (order, kind), or a new one published after the commit. It belongs to
    the order's city; without an order, to `city_id` (default: the configured city)."""
    if order_id is not None:
        existing = (await session.exec(select(OpsAlert).where(
            OpsAlert.order_id == order_id, OpsAlert.kind == kind, OpsAlert.acknowledged_at.is_(None)))).first()  # type: ignore[union-attr]
        if existing is not None:
            return existing
    order = await session.get(Order, order_id) if order_id is not None else None
    alert = OpsAlert(city_id=order.city_id if order else city_id or home_city(), order_id=order_id, kind=kind,
                     level=level, details=details, created_at=now or datetime.now(timezone.utc))
    session.add(alert)
    await session.flush()
    push_after_commit(session, ops_channel(alert.city_id), "alert", alert=alert_public(alert))
    if order is not None:
        await _notify_duty_staff(session, alert, order)
    return alert


async def _notify_duty_staff(session: AsyncSession, alert: OpsAlert, order: Order) -> None:
    payload = {"alert_id": str(alert.id), "kind": alert.kind, "level": alert.level, "order_id": str(order.id),
               "priority": order.priority}
    for account_id in await duty_staff_at(session, order.location, order.city_id):
        await notify(session, account_id, OPS_ALERT, "值班告警 / Operations alert",
                     f"{alert.kind} ({alert.level}) on order {str(order.id)[:8]}.", payload,
                     dedupe_key=f"{OPS_ALERT}:{alert.id}")


async def acknowledge(session: AsyncSession, alert_id: uuid.UUID, account_id: uuid.UUID,
                      now: datetime | None = None) -> OpsAlert:
    """Once: a conditional UPDATE, so of two operators acknowledging together one wins."""
    now = now or datetime.now(timezone.utc)
    row = (await session.exec(update(OpsAlert).where(OpsAlert.id == alert_id, OpsAlert.acknowledged_at.is_(None))  # type: ignore[union-attr]
                              .values(acknowledged_at=now, acknowledged_by=account_id).returning(OpsAlert.id))).first()
    alert = await session.get(OpsAlert, alert_id, populate_existing=True)
    if alert is None:
        raise NotFound("no such alert")
    if row is None:
        raise AlertAlreadyAcknowledged()
    push_after_commit(session, ops_channel(alert.city_id), "alert_acknowledged", id=str(alert.id))
    return alert


async def list_alerts(session: AsyncSession, *, open_only: bool, limit: int, cursor: str | None,
                      city_id: str | None = None) -> tuple[list[OpsAlert], str | None]:
    """Newest first; of one city, or of all without `city_id`."""
    statement = select(OpsAlert)
    if city_id is not None:
        statement = statement.where(OpsAlert.city_id == city_id)
    if open_only:
        statement = statement.where(OpsAlert.acknowledged_at.is_(None))  # type: ignore[union-attr]
    rows = list((await session.exec(paginate(statement, OpsAlert, limit, cursor))).all())
    return page_of(rows, limit)
