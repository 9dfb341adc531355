"""Offer expiry by a delayed job, and a worker that survives Redis going away."""

import asyncio
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlmodel import select

from app import worker
from dispatch.service import Actor, create_order
from kit import jobs
from kit.config import get_settings
from kit.redis import get_redis
from matching import service as matching
from matching.models import Offer
from settlement.models import LedgerAnchor
from tests.factories import make_customer, make_technician

CENTER = (120.155, 30.274)
ROOT = Path(__file__).resolve().parents[2]


async def test_an_offer_lapses_by_its_delayed_job(committed_sessions, redis, empty_queue, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(get_settings(), "offer_timeout_s", 1)
    index = matching.geo_index(get_redis())
    async with committed_sessions() as session:
        customer = await make_customer(session, *CENTER)
        tech = await make_technician(session)
        await matching.go_online(session, index, tech.technician)
        await matching.record_position(session, index, tech.technician, lon=CENTER[0] + 0.002, lat=CENTER[1],
                                       at=datetime.now(timezone.utc))
        order = await create_order(session, customer_id=customer.customer.id, address_id=customer.address.id,
                                   kind="repair", actor=Actor("customer", str(customer.account.id)))
        await session.commit()
    await worker.deliver_ready()
    for city in await worker.active_cities():
        lock = worker.CityLock(city)
        await worker.match_once(lock)
        await lock.release()
    async with committed_sessions() as session:
        offer = (await session.exec(select(Offer).where(Offer.order_id == order.id))).one()
        assert offer.status == "offered"
    stop = asyncio.Event()
    lane = asyncio.create_task(jobs.run_lane(worker.lanes()["realtime"], stop))
    try:
        for _ in range(100):
            async with committed_sessions() as session:
                status = (await session.get(Offer, offer.id, populate_existing=True)).status
            if status != "offered":
                break
            await asyncio.sleep(0.1)
        assert status == "expired"
    finally:
        stop.set()
        await lane


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


class RedisProxy:
    """A TCP proxy in front of the test Redis that the test can take down and bring back."""

    def __init__(self) -> None:
        url = make_url(get_settings().redis_url.replace("redis://", "postgresql://"))
        self.target = (url.host, url.port)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, upstream_writer]
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()


async def test_the_worker_survives_redis_going_away_and_beats_again(tmp_path, redis) -> None:  # noqa: ANN001
    proxy = RedisProxy()
    await proxy.up()
    db = get_settings().redis_url.rsplit("/", 1)[1]
    log_path = tmp_path / "worker.log"
    env = {**os.environ, "GASDISPATCH_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/{db}", "PYTHONUNBUFFERED": "1"}
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "app", "worker"], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    beat = f"{jobs.HEARTBEAT_PREFIX}{os.uname().nodename}:{process.pid}"
    try:
        deadline = time.monotonic() + 60
        while not await redis.exists(beat):
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            await asyncio.sleep(0.2)
        await proxy.down()
        await redis.delete(beat)
        await asyncio.sleep(6)  # a heartbeat or two fail meanwhile
        assert process.poll() is None, log_path.read_text()[-3000:]
        await proxy.up()
        deadline = time.monotonic() + 30
        while not await redis.exists(beat):
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            await asyncio.sleep(0.2)
        assert '"worker.loop_failed"' in log_path.read_text()
    finally:
        process.terminate()
        process.wait(timeout=30)
        await proxy.down()


async def test_the_daily_cron_anchors_the_ledger_day_that_just_ended(session) -> None:  # noqa: ANN001
    assert "settlement.ledger_anchor" in worker.cron_jobs()
    _, job = worker.cron_jobs()["settlement.ledger_anchor"]
    # Days after any the workers of other tests anchored for real (anchors only move forward).
    now = datetime.now(timezone.utc).replace(hour=0, minute=5, second=0, microsecond=0) + timedelta(days=30)
    await job(session, now)
    assert await session.get(LedgerAnchor, (now - timedelta(days=1)).date()) is not None
