"""The concentrator server over real sockets on 127.0.0.1 (ephemeral ports).

The server gets a session factory that shares the test's transaction (tests/meters/conftest.py),
so nothing is committed and nothing needs cleaning up.
"""

import asyncio
import ssl
import time
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from dispatch.models import Order
from meters.listener import ConcentratorServer, tls_context
from meters.models import Quarantine, Reading
from meters.protocols import cjt188
from meters.service import register_concentrator
from tests.meters.meters_factories import cjt188_reply, make_device, mbus_frame, wait_for

TZ = ZoneInfo("Asia/Shanghai")


async def test_split_concatenated_and_garbage_framed_readings_are_all_stored(plain_server, shared, session) -> None:  # noqa: ANN001
    server, port = plain_server
    async with shared():
        device, _ = await make_device(session, external_id="00000000000021")
    frames = [cjt188_reply(device.external_id, volume_hundredths=100 + i, clock=_clock(i)) for i in range(4)]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    first = frames[0]
    writer.write(first[:7])  # split inside the header
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(first[7:] + b"\x00\x13garbage" + frames[1] + frames[2])  # tail, garbage, two frames in one read
    writer.write(b"\x68\x01" + frames[3])  # a false start before the last frame
    await writer.drain()
    count = select(func.count()).select_from(Reading).where(Reading.device_id == device.id)
    assert await wait_for(shared, count, 4) == 4
    assert server.garbage_bytes >= 9
    writer.close()


async def test_unknown_meter_over_tcp_is_quarantined(plain_server, shared) -> None:  # noqa: ANN001
    _, port = plain_server
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(cjt188_reply("99999999999999"))
    await writer.drain()
    query = select(func.count()).select_from(Quarantine).where(Quarantine.external_id == "99999999999999")
    assert await wait_for(shared, query, 1) == 1
    writer.close()


async def test_methane_alarm_frame_orders_one_emergency_within_a_second(plain_server, shared, session) -> None:  # noqa: ANN001
    server, port = plain_server
    async with shared():
        detector, customer = await make_device(session, kind="detector", protocol="mbus", external_id="87654321")
        meter, _ = await make_device(session, external_id="00000000000022", customer=customer, has_valve=True)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(cjt188_reply(meter.external_id))  # the valve meter is reachable on this connection
    await writer.drain()
    await wait_for(shared, select(func.count()).select_from(Reading).where(Reading.device_id == meter.id), 1)
    sent = time.monotonic()
    writer.write(mbus_frame(alarm=True, address=87654321))
    await writer.drain()
    orders = select(func.count()).select_from(Order).where(Order.customer_id == customer.customer.id,
                                                          Order.kind == "emergency_leak")
    assert await wait_for(shared, orders, 1, timeout=1.0) == 1
    assert time.monotonic() - sent < 1.0
    close = await asyncio.wait_for(reader.read(64), 1.0)  # the A017 close command arrives on the socket
    decoded = cjt188.decode(close)
    assert (decoded.address, decoded.valve_command) == (meter.external_id, "close")
    await asyncio.sleep(0.1)
    writer.write(mbus_frame(alarm=True, address=87654321, volume_bcd=2850428))
    await writer.drain()
    await asyncio.sleep(0.3)
    assert await wait_for(shared, orders, 1) == 1
    writer.close()


async def test_plain_tcp_from_an_unlisted_address_is_refused(shared, redis) -> None:  # noqa: ANN001
    server = ConcentratorServer(session_factory=shared, redis=redis, tz=TZ, plain_allowed=frozenset({"10.0.0.9"}))
    tcp = await server.start("127.0.0.1", 0, ssl_context=None)
    reader, writer = await asyncio.open_connection("127.0.0.1", tcp.sockets[0].getsockname()[1])
    writer.write(cjt188_reply("00000000000023"))
    assert await asyncio.wait_for(reader.read(), 1.0) == b""  # closed without a word
    tcp.close()


async def test_tls_handshake_accepts_a_registered_token_and_refuses_others(certificate, shared, session, redis) -> None:  # noqa: ANN001
    async with shared():
        concentrator, token = await register_concentrator(session, code="dtu-7")
        device, _ = await make_device(session, external_id="00000000000024", concentrator_id=concentrator.id)
    server = ConcentratorServer(session_factory=shared, redis=redis, tz=TZ)
    tcp = await server.start("127.0.0.1", 0, ssl_context=tls_context(*certificate))
    port = tcp.sockets[0].getsockname()[1]
    client_tls = ssl.create_default_context(cafile=certificate[0])
    client_tls.check_hostname = False

    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_tls)
    writer.write(b"AUTH dtu-7 wrong-token\n")
    assert await asyncio.wait_for(reader.readline(), 2.0) == b"ERR auth\n"
    writer.close()

    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_tls)
    writer.write(f"AUTH dtu-7 {token}\n".encode())
    assert await asyncio.wait_for(reader.readline(), 2.0) == b"OK\n"
    writer.write(cjt188_reply(device.external_id))
    await writer.drain()
    count = select(func.count()).select_from(Reading).where(Reading.device_id == device.id)
    assert await wait_for(shared, count, 1) == 1
    writer.close()
    tcp.close()


def _clock(i: int):  # noqa: ANN202
    from datetime import datetime

    return datetime(2026, 11, 20, 8, i, 0)
