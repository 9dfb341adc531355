"""Web Push: an offer reaches the technician's phone when the page is closed or the screen locked.

Each device subscribes through its service worker (`POST /v1/me/push-subscriptions`); when
matching offers him an order, this module's handler sends every subscription of his account an
encrypted push (RFC 8291, aes128gcm) signed with the install's VAPID key (RFC 8292). It is a
delivery of its own subscriber ("push") on the worker, never in the offer round: a slow push
service delays nobody, and a failure is retried with the engine's backoff and ends in a dead
letter. A subscription the push service says is gone (404, 410) is deleted, which is not a
failure. Only this module imports pywebpush.
"""

import asyncio
import base64
import binascii
import fnmatch
import json
import math
import re
import uuid
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02
from pywebpush import WebPushException, webpush
from sqlalchemy import literal_column
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.models import Order, PushSubscription, Technician
from kit.config import get_settings
from kit.db import database_now
from kit.events import handles, subscribe
from matching.events import OfferCreated

log = structlog.get_logger(__name__)

GONE = (404, 410)  # the push service no longer knows the subscription (RFC 8030 §7.3)


class PushFailed(Exception):
    """Some pushes of a delivery failed otherwise than with a gone subscription: retried."""


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@lru_cache(maxsize=4)
def _vapid(private_key: str) -> Vapid02:
    return Vapid02.from_raw(private_key.encode())


def vapid_public_key() -> str:
    """The applicationServerKey a page passes to pushManager.subscribe: the uncompressed P-256
    point, base64url."""
    public = _vapid(get_settings().vapid_private_key).public_key
    return _b64encode(public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))


# Validation of what a browser sends; each raises ValueError with the reason.

_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")


def check_endpoint(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    # Plain host names only: a backslash or an "@" is read differently by other URL parsers.
    if not _HOST.fullmatch(parts.netloc):
        raise ValueError("not a push service URL")
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    if not any(fnmatch.fnmatchcase(origin, pattern.lower()) for pattern in get_settings().push_service_origins):
        raise ValueError("not a known push service")
    return endpoint


def check_p256dh(key: str) -> str:
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _b64decode(key))
    except (ValueError, binascii.Error):
        raise ValueError("not an uncompressed P-256 public key, base64url") from None
    return key


def check_auth(secret: str) -> str:
    try:
        if len(_b64decode(secret)) == 16:
            return secret
    except (ValueError, binascii.Error):
        pass
    raise ValueError("not a 16-byte secret, base64url")


async def subscribe_device(session: AsyncSession, account_id: uuid.UUID, *, endpoint: str, p256dh: str,
                           auth: str) -> tuple[PushSubscription, bool]:
    """Stores the device's subscription for the account (its keys renewed when it is known);
    returns it and whether it is new."""
    keys = {"account_id": account_id, "p256dh": p256dh, "auth": auth}
    stored = (await session.exec(insert(PushSubscription).values(
        id=uuid.uuid4(), endpoint=endpoint, created_at=await database_now(session), **keys,
    ).on_conflict_do_update(index_elements=["endpoint"], set_=keys).returning(
        PushSubscription.id, literal_column("xmax = 0")))).one()  # xmax 0: the row was inserted
    row = await session.get(PushSubscription, stored[0], populate_existing=True)
    assert row is not None
    return row, bool(stored[1])


async def unsubscribe_device(session: AsyncSession, account_id: uuid.UUID, subscription_id: uuid.UUID) -> bool:
    """Only the account's own subscription; False when it has none by that id."""
    deleted = await session.exec(delete(PushSubscription).where(
        PushSubscription.id == subscription_id, PushSubscription.account_id == account_id))
    return deleted.rowcount > 0


def _send(subscription: PushSubscription, data: str, ttl: int, urgency: str, topic: str) -> int:
    """One push through the push service; returns its HTTP status (raises on a network error)."""
    settings = get_settings()
    try:
        response = webpush(
            {"endpoint": subscription.endpoint, "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth}},
            data=data, vapid_private_key=_vapid(settings.vapid_private_key),
            vapid_claims={"sub": settings.vapid_subject}, ttl=ttl,
            headers={"Urgency": urgency, "Topic": topic}, timeout=settings.push_timeout_s)
    except WebPushException as exc:
        if exc.response is None:
            raise
        return exc.response.status_code
    return response.status_code


@handles(OfferCreated)
async def on_offer_created(session: AsyncSession, event: OfferCreated) -> None:
    technician = await session.get(Technician, event.technician_id)
    order = await session.get(Order, event.order_id)
    if technician is None or order is None:
        return
    # The push lives as long as the offer: a phone that comes back later is not woken for a
    # lapsed one (and a retry after the deadline sends nothing).
    ttl = math.ceil((event.expires_at - await database_now(session)).total_seconds())
    if ttl <= 0:
        return
    subscriptions = (await session.exec(select(PushSubscription).where(
        PushSubscription.account_id == technician.account_id).order_by(col(PushSubscription.created_at)))).all()
    # Slugs only: the service worker words them in the phone's language.
    payload: dict[str, Any] = {"type": "offer", "order_id": str(order.id), "offer_id": str(event.offer_id),
                               "kind": order.kind, "priority": order.priority,
                               "expires_at": event.expires_at.isoformat()}
    data = json.dumps(payload, separators=(",", ":"))
    urgency = "high" if order.priority == "emergency" else "normal"
    # pywebpush is synchronous (requests): off the event loop, the devices at once, each bounded
    # by its timeout.
    results = await asyncio.gather(*(asyncio.to_thread(_send, subscription, data, ttl, urgency, order.id.hex)
                                     for subscription in subscriptions), return_exceptions=True)
    failed: list[str] = []
    for subscription, result in zip(subscriptions, results):
        if isinstance(result, BaseException):  # the network or the push service: retried by the engine
            failed.append(f"{subscription.id}: {type(result).__name__}: {result}"[:300])
        elif result in GONE:
            await session.delete(subscription)
            log.info("push.subscription_gone", subscription_id=str(subscription.id), status=result)
        elif result >= 300:
            failed.append(f"{subscription.id}: HTTP {result}")
    await session.flush()
    if failed:
        raise PushFailed("; ".join(failed))


def register() -> None:
    # A subscriber of its own: a push retried with backoff never holds up the dispatch
    # package's deliveries of the same order (they reach a subscriber in order).
    subscribe("matching.offer_created", on_offer_created, subscriber="push")
