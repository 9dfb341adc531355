"""POST /v1/telemetry/{platform}: HMAC-signed CTWing pushes; forged, stale and replayed refused."""

import json
import time
import uuid

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from dispatch.models import Order
from meters.models import Quarantine
from meters.nbiot import sign
from tests.meters.meters_factories import make_device

SECRET = "ctwing-test-secret"
DETECTOR_PRODUCT = "17000001"


@pytest.fixture(autouse=True)
def webhook_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "meters_webhook_secrets", {"ctwing": SECRET})


def envelope(imei: str, product: str = DETECTOR_PRODUCT, **service_data) -> bytes:  # noqa: ANN003
    return json.dumps({
        "messageType": "dataReport", "productId": product, "deviceId": "dev-" + imei, "IMEI": imei,
        "timestamp": int(time.time() * 1000), "payload": {"serviceData": service_data},
    }).encode()


def headers(body: bytes, *, secret: str = SECRET, ts: int | None = None, message_id: str | None = None) -> dict[str, str]:
    stamp = str(ts if ts is not None else int(time.time()))
    return {"X-Timestamp": stamp, "X-Signature": sign(secret, stamp, body), "X-Message-Id": message_id or uuid.uuid4().hex,
            "Content-Type": "application/json"}


async def test_signed_alarm_is_stored_and_orders_an_emergency(client: AsyncClient, session: AsyncSession) -> None:
    detector, customer = await make_device(session, kind="detector", protocol="nbiot", external_id="861000000000001")
    body = envelope(detector.external_id, gas_value=42, gas_sensor_state=1, battery_state=0)
    response = await client.post("/v1/telemetry/ctwing", content=body, headers=headers(body))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "stored" and len(response.json()["order_ids"]) == 1
    order = (await session.exec(select(Order).where(Order.customer_id == customer.customer.id))).scalar_one()
    assert (order.kind, order.source) == ("emergency_leak", "alarm")


async def test_forged_signature_is_refused(client: AsyncClient, session: AsyncSession) -> None:
    detector, customer = await make_device(session, kind="detector", protocol="nbiot", external_id="861000000000002")
    body = envelope(detector.external_id, gas_sensor_state=1)
    response = await client.post("/v1/telemetry/ctwing", content=body, headers=headers(body, secret="guessed"))
    assert response.status_code == 401
    assert response.json()["type"] == "/problems/webhook-signature-invalid"
    assert (await session.exec(select(Order).where(Order.customer_id == customer.customer.id))).first() is None


async def test_stale_timestamp_is_refused(client: AsyncClient) -> None:
    body = envelope("861000000000003", gas_sensor_state=0)
    response = await client.post("/v1/telemetry/ctwing", content=body, headers=headers(body, ts=int(time.time()) - 3600))
    assert response.status_code == 401


async def test_replayed_message_is_refused(client: AsyncClient, session: AsyncSession) -> None:
    detector, _ = await make_device(session, kind="detector", protocol="nbiot", external_id="861000000000004")
    body = envelope(detector.external_id, gas_sensor_state=0, gas_value=1)
    signed = headers(body, message_id="m-1")
    assert (await client.post("/v1/telemetry/ctwing", content=body, headers=signed)).status_code == 200
    replay = await client.post("/v1/telemetry/ctwing", content=body, headers=signed)
    assert replay.status_code == 409 and replay.json()["type"] == "/problems/webhook-replayed"


async def test_unknown_device_and_unknown_product_are_quarantined(client: AsyncClient, session: AsyncSession) -> None:
    for body in (envelope("861999999999999", gas_sensor_state=1), envelope("861999999999998", product="404", x=1)):
        response = await client.post("/v1/telemetry/ctwing", content=body, headers=headers(body))
        assert response.json()["status"] == "quarantined"
    reasons = (await session.exec(select(Quarantine.reason).where(Quarantine.channel == "webhook"))).scalars().all()
    assert sorted(reasons) == ["unknown device", "unknown product"]
    assert (await session.exec(select(Order).where(Order.source == "alarm"))).first() is None


async def test_malformed_body_and_unknown_platform_are_4xx(client: AsyncClient) -> None:
    body = b"{not json"
    assert (await client.post("/v1/telemetry/ctwing", content=body, headers=headers(body))).status_code == 422
    bad = envelope("861000000000005", gas_value="high")
    assert (await client.post("/v1/telemetry/ctwing", content=bad, headers=headers(bad))).status_code == 422
    assert (await client.post("/v1/telemetry/other", content=body, headers=headers(body))).status_code == 404
