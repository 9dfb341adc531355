"""Meters: a captured webhook cannot be replayed under a new message id, and a device's
reports are accepted only from the concentrator or platform it is registered under."""

import json
import time
from datetime import datetime, timezone

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from dispatch.models import Order
from meters.ingest import Ingestor, Telemetry
from meters.models import Quarantine, Reading
from meters.nbiot import sign
from meters.service import register_concentrator
from tests.meters.meters_factories import make_device

SECRET = "ctwing-test-secret"


@pytest.fixture(autouse=True)
def webhook_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "meters_webhook_secrets", {"ctwing": SECRET})


async def test_replayed_webhook_with_a_fresh_message_id_is_refused(client: AsyncClient, session: AsyncSession) -> None:
    detector, _ = await make_device(session, kind="detector", protocol="nbiot", external_id="861000000009001")
    body = json.dumps({"messageType": "dataReport", "productId": "17000001", "IMEI": detector.external_id,
                       "timestamp": int(time.time() * 1000), "payload": {"serviceData": {"gas_value": 1}}}).encode()
    ts = str(int(time.time()))
    signed = {"X-Timestamp": ts, "X-Signature": sign(SECRET, ts, body), "Content-Type": "application/json"}
    assert (await client.post("/v1/telemetry/ctwing", content=body, headers=signed | {"X-Message-Id": "a"})).status_code == 200
    replay = await client.post("/v1/telemetry/ctwing", content=body, headers=signed | {"X-Message-Id": "b"})
    assert replay.status_code == 409 and replay.json()["type"] == "/problems/webhook-replayed"


async def test_meter_reports_from_a_foreign_concentrator_are_quarantined(session: AsyncSession, redis) -> None:  # noqa: ANN001
    home, _ = await register_concentrator(session, code="sec-home")
    meter, customer = await make_device(session, external_id="00000000000901", concentrator_id=home.id)
    now = datetime.now(timezone.utc)
    forged = Telemetry(meter.external_id, "cjt188", now, now, valve="abnormal")
    for source in ("concentrator:sec-intruder", "legacy:10.9.9.9", "platform:ctwing"):
        result = await Ingestor().ingest(session, redis, [forged], channel="tcp", source=source, now=now)
        assert (result.stored, result.quarantined, result.order_ids) == (0, 1, [])
    reasons = (await session.exec(select(Quarantine.reason).where(Quarantine.external_id == meter.external_id))).scalars()
    assert set(reasons) == {"wrong concentrator"}
    assert (await session.exec(select(func.count()).select_from(Reading).where(Reading.device_id == meter.id))).scalar() == 0
    assert (await session.exec(select(Order).where(Order.customer_id == customer.customer.id))).first() is None


async def test_nbiot_detector_reports_from_another_platform_or_a_concentrator_are_quarantined(
    session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    detector, customer = await make_device(session, kind="detector", protocol="nbiot", external_id="861000000009002")
    unbound, _ = await make_device(session, external_id="00000000000902", customer=customer)
    now = datetime.now(timezone.utc)
    alarm = Telemetry(detector.external_id, "nbiot", now, now, alarm=True)
    for source in ("platform:onenet", "concentrator:sec-any"):
        result = await Ingestor().ingest(session, redis, [alarm], channel="webhook", source=source, now=now)
        assert (result.stored, result.quarantine_reasons) == (0, {"wrong platform": 1})
    # A wired device registered without a concentrator is legacy-only: no authenticated
    # concentrator or platform may speak for it.
    heartbeat = Telemetry(unbound.external_id, "cjt188", now, now, volume_m3=1.0)
    result = await Ingestor().ingest(session, redis, [heartbeat], channel="tcp", source="concentrator:sec-any", now=now)
    assert result.quarantine_reasons == {"device not bound to a concentrator": 1}
    assert (await session.exec(select(Order).where(Order.customer_id == customer.customer.id))).first() is None


async def test_a_configured_standby_concentrator_may_carry_the_devices(
    session: AsyncSession, redis, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    home, _ = await register_concentrator(session, code="sec-main")
    meter, _ = await make_device(session, external_id="00000000000903", concentrator_id=home.id)
    ingestor = Ingestor()
    monkeypatch.setattr(ingestor.settings, "meters_binding_alternates", {"concentrator:sec-main": ["concentrator:sec-standby"]})
    now = datetime.now(timezone.utc)
    result = await ingestor.ingest(session, redis, [Telemetry(meter.external_id, "cjt188", now, now, volume_m3=2.0)],
                                   channel="tcp", source="concentrator:sec-standby", now=now)
    assert (result.stored, result.quarantined) == (1, 0)
