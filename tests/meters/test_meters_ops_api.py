"""The operations views over HTTP: a device's reading history (paginated), its last frames
with what became of each, the quarantine (paginated), and device registration's binding."""

import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from meters.ingest import Ingestor, Telemetry
from tests.factories import make_customer, make_staff
from tests.meters.meters_factories import make_device

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)


async def test_reading_history_pages_newest_first_and_frames_show_their_outcome(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    meter, _ = await make_device(session, external_id="00000000000951")
    reports = [Telemetry(meter.external_id, "cjt188", NOW + timedelta(minutes=i), NOW + timedelta(minutes=i),
                         volume_m3=float(i), raw={"hex": f"{i:02x}"}) for i in range(5)]
    await Ingestor().ingest(session, redis, [*reports, replace(reports[0])], channel="tcp", source="legacy:t", now=NOW)
    forged = Telemetry(meter.external_id, "cjt188", NOW, NOW + timedelta(hours=1), raw={"hex": "ff"})
    await Ingestor().ingest(session, redis, [forged], channel="tcp", source="concentrator:elsewhere", now=NOW)
    _, admin = await make_staff(session, "admin")

    first = (await client.get(f"/v1/devices/{meter.id}/readings?limit=3", headers=admin)).json()
    second = (await client.get(f"/v1/devices/{meter.id}/readings?limit=3&cursor={first['next_cursor']}",
                               headers=admin)).json()
    assert [r["volume_m3"] for r in first["data"] + second["data"]] == [4.0, 3.0, 2.0, 1.0, 0.0]
    assert second["next_cursor"] is None

    frames = (await client.get(f"/v1/devices/{meter.id}/frames?limit=3", headers=admin)).json()["data"]
    assert [f["outcome"] for f in frames] == ["quarantined: device not bound to a concentrator", "stored", "stored"]
    assert '"ff"' in frames[0]["raw"] and [f["raw"] for f in frames[1:]] == ["04", "03"]


async def test_ops_views_refuse_customers_and_bad_cursors(client: AsyncClient, session: AsyncSession) -> None:
    meter, customer = await make_device(session, external_id="00000000000952")
    from tests.factories import bearer

    as_customer = await client.get(f"/v1/devices/{meter.id}/readings", headers=bearer(customer.account))
    assert as_customer.status_code == 403
    _, admin = await make_staff(session, "admin")
    bad = await client.get(f"/v1/devices/{meter.id}/readings?cursor=nonsense", headers=admin)
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    missing = await client.get(f"/v1/devices/{uuid.uuid4()}/frames", headers=admin)
    assert missing.status_code == 404


async def test_quarantine_pages(client: AsyncClient, session: AsyncSession, redis) -> None:  # noqa: ANN001
    unknown = [Telemetry(f"NOSUCH{i}", "cjt188", NOW, NOW) for i in range(3)]
    await Ingestor().ingest(session, redis, unknown, channel="tcp", source="legacy:t", now=NOW)
    _, admin = await make_staff(session, "admin")
    first = (await client.get("/v1/telemetry-quarantine?limit=2", headers=admin)).json()
    rest = (await client.get(f"/v1/telemetry-quarantine?limit=2&cursor={first['next_cursor']}", headers=admin)).json()
    assert [q["external_id"] for q in first["data"] + rest["data"]] == ["NOSUCH2", "NOSUCH1", "NOSUCH0"]


async def test_nbiot_device_must_name_its_platform(client: AsyncClient, session: AsyncSession) -> None:
    customer = await make_customer(session)
    _, admin = await make_staff(session, "admin")
    body = {"kind": "detector", "protocol": "nbiot", "external_id": "861000000009531", "customer_id": str(customer.customer.id),
            "address_id": str(customer.address.id), "installed_at": NOW.isoformat(), "report_interval_s": 3600}
    refused = await client.post("/v1/devices", json=body, headers=admin)
    assert refused.status_code == 422 and refused.json()["type"] == "/problems/invalid-input"
    created = await client.post("/v1/devices", json=body | {"platform": "ctwing"}, headers=admin)
    assert created.status_code == 201 and created.json()["platform"] == "ctwing"
