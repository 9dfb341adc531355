"""Offer alerts by Web Push (issue #16 item 1), end to end on a real HTTP push endpoint: the
technician's devices subscribe through the API, matching offers him an emergency, and the
event's delivery sends each device a push that the endpoint decrypts per RFC 8291 with the
device's own keys and whose VAPID token it verifies; a gone device (410) is forgotten, a push
service failure is retried by the engine."""

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import push
from dispatch.models import PushSubscription
from kit.config import get_settings
from kit.models import Delivery
from matching import service as engine
from tests.factories import make_technician
from tests.matching.test_live_engine import CENTER, new_order, open_offer


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class PushService:
    """A push service on loopback: records each POST and answers with the status set per path."""

    origin: str
    answers: dict[str, int] = field(default_factory=dict)
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def push_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[PushService]:
    service: PushService

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            service.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(service.answers.get(self.path, 201))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    service = PushService(origin=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # The install allows only known push services; this test's service is one of them.
    monkeypatch.setattr(get_settings(), "push_service_origins", [service.origin])
    yield service
    server.shutdown()
    server.server_close()


@dataclass
class Device:
    """A browser's side of a subscription: its P-256 key pair and auth secret (RFC 8291 §3)."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self) -> dict[str, Any]:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": self.endpoint, "keys": {"p256dh": b64(public), "auth": b64(self.auth)}}

    def decrypt(self, body: bytes) -> dict[str, Any]:
        return json.loads(http_ece.decrypt(body, private_key=self.private_key, auth_secret=self.auth,
                                           version="aes128gcm"))


@pytest.fixture
def index(redis):  # noqa: ANN001, ANN201
    return engine.geo_index(redis)


async def emergency_technician(session: AsyncSession, index):  # noqa: ANN001, ANN201
    ctx = await make_technician(session, kinds=("repair", "emergency"))
    await engine.go_online(session, index, ctx.technician)
    await engine.record_position(session, index, ctx.technician, lon=CENTER[0] + 0.002, lat=CENTER[1],
                                 at=datetime.now(timezone.utc))
    return ctx


async def subscribe(client: AsyncClient, headers: dict[str, str], device: Device) -> str:
    stored = await client.post("/v1/me/push-subscriptions", headers=headers, json=device.subscription())
    assert stored.status_code == 201, stored.text
    return stored.json()["id"]


async def push_deliveries(session: AsyncSession) -> list[Delivery]:
    return list((await session.exec(select(Delivery).where(
        Delivery.subscriber == "push", Delivery.topic == "matching.offer_created"))).all())


async def test_an_emergency_offer_reaches_each_device_encrypted_and_signed_and_a_gone_device_is_forgotten(
    session: AsyncSession, client: AsyncClient, index, push_service: PushService,  # noqa: ANN001
) -> None:
    technician = await emergency_technician(session, index)
    phone = Device(f"{push_service.origin}/push/phone")
    old_tablet = Device(f"{push_service.origin}/push/old-tablet")
    await subscribe(client, technician.headers, phone)
    tablet_id = await subscribe(client, technician.headers, old_tablet)
    push_service.answers["/push/old-tablet"] = 410

    order = await new_order(session, kind="emergency_leak")  # drains: the offer round, then its push
    offer = await open_offer(session, order.id)
    assert offer is not None and offer.technician_id == technician.technician.id

    by_path = {path: (headers, body) for path, headers, body in push_service.received}
    assert set(by_path) == {"/push/phone", "/push/old-tablet"}
    headers, body = by_path["/push/phone"]
    assert phone.decrypt(body) == {
        "type": "offer", "order_id": str(order.id), "offer_id": str(offer.id), "kind": "emergency_leak",
        "priority": "emergency", "expires_at": offer.expires_at.isoformat()}
    assert headers["content-encoding"] == "aes128gcm"
    assert headers["urgency"] == "high"
    assert 0 < int(headers["ttl"]) <= 15  # the emergency offer's remaining time
    assert headers["topic"] == order.id.hex

    # VAPID (RFC 8292): an ES256 token for this push service's origin, signed by the install's
    # key, whose public half is the one the page subscribes with.
    scheme, _, params = headers["authorization"].partition(" ")
    fields = dict(part.split("=", 1) for part in params.split(","))
    assert scheme == "vapid" and fields["k"] == push.vapid_public_key()
    served = (await client.get("/v1/push/vapid-public-key")).json()["public_key"]
    assert served == fields["k"]
    public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(served))
    claims = jwt.decode(fields["t"], public_key, algorithms=["ES256"], audience=push_service.origin)
    assert claims["sub"] == get_settings().vapid_subject
    assert claims["exp"] > time.time()

    # The tablet answered 410: its subscription is gone, and that is no failure of the delivery.
    assert await session.get(PushSubscription, tablet_id) is None
    assert [d.state for d in await push_deliveries(session)] == ["done"]
    # Another device of his still gets the next alerts; the gone one cannot be unsubscribed twice.
    assert (await client.delete(f"/v1/me/push-subscriptions/{tablet_id}", headers=technician.headers)).status_code == 404


async def test_a_failing_push_service_leaves_the_delivery_to_be_retried(
    session: AsyncSession, client: AsyncClient, index, push_service: PushService,  # noqa: ANN001
) -> None:
    technician = await emergency_technician(session, index)
    phone = Device(f"{push_service.origin}/push/phone")
    subscription_id = await subscribe(client, technician.headers, phone)
    push_service.answers["/push/phone"] = 503

    await new_order(session, kind="emergency_leak")
    [delivery] = await push_deliveries(session)
    assert delivery.state == "pending" and delivery.attempts == 1
    assert "HTTP 503" in (delivery.last_error or "")
    assert await session.get(PushSubscription, subscription_id) is not None
