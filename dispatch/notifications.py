"""Notifications: every event a person should know about becomes a record for that user,
pushed on the socket when connected, listed over REST, and handed to delivery channels
(SMS, WeChat template messages, app push) behind one adapter — always after the commit,
so sending never blocks the order's transaction."""

import uuid
from datetime import datetime, timezone
from typing import Any, Protocol

import structlog
from sqlalchemy import update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit import after_commit
from kit.fanout import account_channel, push_after_commit
from dispatch.models import Notification
from kit.pagination import page_of, paginate

log = structlog.get_logger(__name__)
MESSAGE = "message"  # written by operations to a customer or technician about an order


class DeliveryChannel(Protocol):
    name: str

    async def send(self, notification: Notification) -> None: ...


class LoggingChannel:
    """The default channel: a structured log line per notification (no secrets in it)."""

    name = "log"

    async def send(self, notification: Notification) -> None:
        log.info("notification.delivered", channel=self.name, kind=notification.kind,
                 account_id=str(notification.account_id), notification_id=str(notification.id))


_channels: list[DeliveryChannel] = [LoggingChannel()]


def use_channels(channels: list[DeliveryChannel]) -> None:
    _channels[:] = channels


async def notify(session: AsyncSession, account_id: uuid.UUID, kind: str, title: str, body: str,
                 payload: dict[str, Any] | None = None, dedupe_key: str | None = None) -> Notification | None:
    """Record, then push and deliver after commit. A dedupe_key makes a redelivered event a no-op."""
    if dedupe_key is not None:
        existing = (await session.exec(select(Notification.id).where(
            Notification.account_id == account_id, Notification.dedupe_key == dedupe_key))).first()
        if existing is not None:
            return None
    notification = Notification(account_id=account_id, kind=kind, title=title, body=body,
                                payload=payload or {}, dedupe_key=dedupe_key)
    session.add(notification)
    await session.flush()
    push_after_commit(session, account_channel(account_id), "notification", notification=pushed(notification))

    async def deliver() -> None:
        for channel in _channels:
            await channel.send(notification)

    after_commit.defer(session, deliver)
    return notification


def pushed(notification: Notification) -> dict[str, Any]:
    """A notification as the sockets carry it."""
    return {"id": str(notification.id), "kind": notification.kind, "title": notification.title,
            "body": notification.body, "payload": notification.payload,
            "created_at": notification.created_at.isoformat()}


async def messages_for(session: AsyncSession, account_id: uuid.UUID, order_id: uuid.UUID) -> list[Notification]:
    """Operations' messages to this account about this order, oldest first."""
    return list((await session.exec(select(Notification).where(
        Notification.account_id == account_id, Notification.kind == MESSAGE,
        Notification.payload["order_id"].astext == str(order_id),
    ).order_by(Notification.created_at))).all())


async def list_for(session: AsyncSession, account_id: uuid.UUID, *, unread_only: bool, limit: int,
                   cursor: str | None) -> tuple[list[Notification], str | None]:
    statement = select(Notification).where(Notification.account_id == account_id)
    if unread_only:
        statement = statement.where(Notification.read_at.is_(None))
    return page_of(list((await session.exec(paginate(statement, Notification, limit, cursor))).all()), limit)


async def mark_read(session: AsyncSession, account_id: uuid.UUID, notification_id: uuid.UUID) -> bool:
    result = await session.exec(update(Notification).where(
        Notification.id == notification_id, Notification.account_id == account_id, Notification.read_at.is_(None)
    ).values(read_at=datetime.now(timezone.utc)))
    return result.rowcount == 1
