"""Issue #13, item 13 (arrival): check-in needs a track the server itself recorded that could
really have reached the door, not just a last fix placed there."""

from datetime import datetime, timedelta, timezone

from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from dispatch.field import identity
from dispatch.models import Order
from tests.field.support import CENTER, LON_PER_M, accepted_job


def fix(metres_east: float, at: datetime) -> dict:
    return {"position": {"type": "Point", "coordinates": [CENTER[0] + metres_east * LON_PER_M, CENTER[1]]},
            "ts": at.isoformat()}


async def job_at_the_door_step(client: AsyncClient, session: AsyncSession, redis, start_m: float, started: datetime):  # noqa: ANN001, ANN201
    job = await accepted_job(session, redis, started, start_m=start_m)
    assert (await client.post(f"/v1/jobs/{job.order.id}/depart", headers=job.technician.headers)).status_code == 200
    await identity.waive(session, job.order, identity.Actor("customer", "c"), "I know him", started)
    return job


async def test_walking_to_the_door_in_tiny_steps_stamped_a_moment_apart_is_refused(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    now = datetime.now(timezone.utc)
    job = await job_at_the_door_step(client, session, redis, 2000, now)
    # Each step is inside the per-fix GPS allowance, so every fix is accepted: 2 km "in 70 ms".
    for step in range(1, 71):
        sent = await client.post("/v1/technicians/me/location", headers=job.technician.headers,
                                 json=fix(max(2000 - 29 * step, 20), now + timedelta(milliseconds=step)))
        assert sent.json()["outcome"] == "accepted", sent.text
    arrived = await client.post(f"/v1/jobs/{job.order.id}/arrive", headers=job.technician.headers)
    assert arrived.status_code == 422, arrived.text
    assert arrived.json()["type"] == "/problems/implausible-arrival"
    assert (await session.get(Order, job.order.id, populate_existing=True)).status == "en_route"


async def test_a_door_fix_stamped_long_after_the_last_one_but_sent_at_once_is_refused(
    client: AsyncClient, session: AsyncSession, redis, monkeypatch,  # noqa: ANN001
) -> None:
    # The phone's clock decides the per-fix speed check; the server's clock decides arrival.
    monkeypatch.setattr(get_settings(), "stale_after_s", 600)
    now = datetime.now(timezone.utc)
    job = await job_at_the_door_step(client, session, redis, 2000, now - timedelta(minutes=5))
    await client.post("/v1/technicians/me/location", headers=job.technician.headers, json=fix(1990, now - timedelta(minutes=4)))
    sent = await client.post("/v1/technicians/me/location", headers=job.technician.headers, json=fix(20, now))
    assert sent.json()["outcome"] == "accepted", sent.text
    arrived = await client.post(f"/v1/jobs/{job.order.id}/arrive", headers=job.technician.headers)
    assert arrived.status_code == 422, arrived.text
    assert arrived.json()["type"] == "/problems/implausible-arrival"


async def test_an_honest_approach_still_checks_in(client: AsyncClient, session: AsyncSession, redis, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(get_settings(), "stale_after_s", 300)
    now = datetime.now(timezone.utc)
    job = await job_at_the_door_step(client, session, redis, 2000, now - timedelta(minutes=3))
    sent = await client.post("/v1/technicians/me/location", headers=job.technician.headers, json=fix(30, now))
    assert sent.json()["outcome"] == "accepted", sent.text
    arrived = await client.post(f"/v1/jobs/{job.order.id}/arrive", headers=job.technician.headers)
    assert arrived.status_code == 200, arrived.text
