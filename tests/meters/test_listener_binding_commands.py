"""Over real TLS sockets: binding (a device reports only through its own concentrator),
rejections counted on the listener's Prometheus port and logged once per reason per
connection, and queued valve closes sent as soon as the concentrator reconnects."""

import asyncio
import re
import ssl
from datetime import datetime, timezone

import httpx
import pytest
from structlog.testing import capture_logs
from sqlalchemy import func, select

from meters import rules
from meters.ingest import DeviceInfo
from meters.listener import ConcentratorServer, start_metrics_server, tls_context
from meters.models import Quarantine, Reading, ValveCommand
from meters.protocols import cjt188
from meters.service import register_concentrator
from tests.meters.conftest import TZ
from tests.meters.meters_factories import cjt188_reply, make_device, wait_for


@pytest.fixture
async def tls_server(certificate, shared, redis):  # noqa: ANN001, ANN201
    server = ConcentratorServer(session_factory=shared, redis=redis, tz=TZ)
    tcp = await server.start("127.0.0.1", 0, ssl_context=tls_context(*certificate))
    client_tls = ssl.create_default_context(cafile=certificate[0])
    client_tls.check_hostname = False

    async def connect(code: str, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", tcp.sockets[0].getsockname()[1], ssl=client_tls)
        writer.write(f"AUTH {code} {token}\n".encode())
        assert await asyncio.wait_for(reader.readline(), 2.0) == b"OK\n"
        return reader, writer

    yield connect
    tcp.close()


@pytest.fixture
def metrics_url():  # noqa: ANN201
    server, thread = start_metrics_server("127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    thread.join(2)


async def scrape(url: str, name: str, **labels: str) -> float:
    text = (await asyncio.to_thread(httpx.get, url, timeout=2)).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and ",".join(sorted((match.group(1) or "").split(","))) == wanted:
            return float(match.group(2))
    return 0.0


async def test_meter_reporting_through_another_concentrator_is_quarantined_and_counted(
    tls_server, shared, session, metrics_url,  # noqa: ANN001
) -> None:
    async with shared():
        home, _ = await register_concentrator(session, code="dtu-home")
        _, other_token = await register_concentrator(session, code="dtu-other")
        meter, _ = await make_device(session, external_id="00000000000071", concentrator_id=home.id)
    quarantined = dict(name="gasdispatch_meters_quarantined_total", channel="tcp", reason="wrong concentrator")
    unknown = dict(name="gasdispatch_meters_quarantined_total", channel="tcp", reason="unknown device")
    before = (await scrape(metrics_url, **quarantined), await scrape(metrics_url, **unknown),
              await scrape(metrics_url, "gasdispatch_meters_garbage_bytes_total"))

    with capture_logs() as logged:
        _, writer = await tls_server("dtu-other", other_token)
        bad_checksum = bytearray(cjt188_reply("00000000000072"))
        bad_checksum[-2] ^= 0xFF
        writer.write(cjt188_reply(meter.external_id) + bytes(bad_checksum) + b"garbage"
                     + cjt188_reply("99999999999971") + cjt188_reply("99999999999971", volume_hundredths=1))
        await writer.drain()
        refused = select(func.count()).select_from(Quarantine).where(Quarantine.external_id.in_(
            [meter.external_id, "99999999999971"]))
        assert await wait_for(shared, refused, 3) == 3
        writer.close()
        await asyncio.sleep(0.1)

    row = (await session.exec(select(Quarantine).where(Quarantine.external_id == meter.external_id))).scalar_one()
    assert (row.reason, row.source, row.raw["expected_source"]) == (
        "wrong concentrator", "concentrator:dtu-other", "concentrator:dtu-home")
    assert (await session.exec(select(func.count()).select_from(Reading).where(Reading.device_id == meter.id))).scalar() == 0
    after = (await scrape(metrics_url, **quarantined), await scrape(metrics_url, **unknown),
             await scrape(metrics_url, "gasdispatch_meters_garbage_bytes_total"))
    # A frame with a bad checksum is no frame: its bytes (the FE preamble aside) count as garbage.
    assert after[0] - before[0] == 1 and after[1] - before[1] == 2 and after[2] - before[2] == len(bad_checksum) - 2 + 7
    rejected = [e["reason"] for e in logged if e["event"] == "meters.frame_rejected"]
    assert sorted(rejected) == ["garbage bytes", "quarantined: unknown device", "quarantined: wrong concentrator"]
    closing = [e for e in logged if e["event"] == "meters.connection_rejections"]
    assert closing[0]["rejections"]["quarantined: unknown device"] == 2  # once per reason, with the counts


async def test_queued_valve_close_goes_out_when_the_concentrator_reconnects(tls_server, shared, session) -> None:  # noqa: ANN001
    async with shared():
        concentrator, token = await register_concentrator(session, code="dtu-valves")
        valve, customer = await make_device(session, external_id="00000000000073", concentrator_id=concentrator.id,
                                            has_valve=True)
        detector, _ = await make_device(session, kind="detector", protocol="nbiot", external_id="861000000007301",
                                        customer=customer)
        # The detector's alarm came by webhook while the concentrator was away.
        info = DeviceInfo(detector.id, "detector", detector.external_id, customer.customer.id, customer.address.id,
                          False, 0x30, 3600)
        await rules.raise_fault(session, info, "methane_alarm", now=datetime.now(timezone.utc))
    reader, writer = await tls_server("dtu-valves", token)  # the meter has not reported
    frame = await asyncio.wait_for(reader.read(64), 2.0)
    decoded = cjt188.decode(frame)
    assert (decoded.address, decoded.valve_command) == (valve.external_id, "close")
    status = select(ValveCommand.status).where(ValveCommand.device_id == valve.id)
    assert await wait_for(shared, status, "sent") == "sent"
    writer.write(cjt188.encode(meter_type=0x30, address=valve.external_id, control=0x84, di=cjt188.DI_VALVE,
                               data=b"\x01\x00"))  # the meter's valve reply
    await writer.drain()
    assert await wait_for(shared, status, "acknowledged") == "acknowledged"
    writer.close()
