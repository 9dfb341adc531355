"""The live batch round adds the city's stored look-ahead values (issue 17, item 2): of two
technicians about as near, it sends the one standing where little work comes. Values weigh in
the batch, where supply is not ample (where it is, the first to arrive goes: test_adaptive). An
idle technician where little work comes is hinted towards a neighbouring cell where more does."""

import json
from datetime import datetime, timezone

import h3
import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from kit import after_commit
from kit.fanout import account_channel
from matching import service as engine
from matching.models import CellValue, ValueVersion
from matching.values import RESOLUTION, SLOT_S
from tests.factories import online_technician
from tests.matching.test_live_engine import CENTER, new_order, open_offer

BUSY = (CENTER[0] + 0.02, CENTER[1])  # the order's own cell: work comes here all day
DEAD = (CENTER[0] - 0.022, CENTER[1])  # ~0.2 km further, in a cell where it rarely does
ELSEWHERE = (CENTER[0], CENTER[1] + 0.08)  # a second order ~9 km north, with its own technician:
# three free technicians for two orders is not ample supply, so the round is a batch


async def store_values(session: AsyncSession, city: str) -> None:
    """A version as `gasdispatch matching train-values` writes it: V is minus the discounted
    seconds lost ahead, so the dead cell is far below the busy one in every slot."""
    assert h3.latlng_to_cell(BUSY[1], BUSY[0], RESOLUTION) != h3.latlng_to_cell(DEAD[1], DEAD[0], RESOLUTION)
    now = datetime.now(timezone.utc)
    version = ValueVersion(city_id=city, period_start=now, period_end=now, orders=100, resolution=RESOLUTION,
                           slot_s=SLOT_S, discount_per_s=0.9 ** (1 / 600))
    session.add(version)
    await session.flush()
    for (lon, lat), value in ((BUSY, -100.0), (DEAD, -3000.0)):
        cell = h3.latlng_to_cell(lat, lon, RESOLUTION)
        session.add_all([CellValue(version_id=version.id, cell=cell, slot=s, value_s=value) for s in range(86_400 // SLOT_S)])
    await session.flush()


@pytest.mark.parametrize("trained", [False, True])
async def test_a_round_sends_the_technician_from_the_dead_corner_once_values_are_trained(
        session: AsyncSession, index, trained: bool) -> None:  # noqa: ANN001
    busy = await online_technician(session, index, *BUSY)
    dead = await online_technician(session, index, *DEAD)
    await online_technician(session, index, *ELSEWHERE)
    if trained:
        await store_values(session, busy.technician.city_id)
    order = await new_order(session)
    await new_order(session, lon=ELSEWHERE[0], lat=ELSEWHERE[1])
    await engine.run_batch(session, index)
    expected = dead if trained else busy  # untrained: simply the nearer one
    assert (await open_offer(session, order.id)).technician_id == expected.technician.id


async def test_an_idle_technician_in_a_dead_corner_is_hinted_towards_the_neighbouring_cell_where_work_comes(
        session: AsyncSession, index, redis) -> None:  # noqa: ANN001
    """The hint as the round pushes it (once per period), what the technician app shows."""
    tech = await online_technician(session, index, *DEAD)
    here = h3.latlng_to_cell(DEAD[1], DEAD[0], RESOLUTION)
    busy, *others = [c for c in h3.grid_disk(here, 1) if c != here]
    now = datetime.now(timezone.utc)
    version = ValueVersion(city_id=tech.technician.city_id, period_start=now, period_end=now, orders=100,
                           resolution=RESOLUTION, slot_s=SLOT_S, discount_per_s=0.9 ** (1 / 600))
    session.add(version)
    await session.flush()
    session.add_all([CellValue(version_id=version.id, cell=cell, slot=s, value_s=-100.0 if cell == busy else -3000.0)
                     for cell in (here, busy, *others) for s in range(86_400 // SLOT_S)])
    await session.flush()
    listener = redis.pubsub()
    await listener.subscribe(account_channel(tech.account.id))
    hints = []
    for _ in range(2):  # the second round falls in the same period: no second hint
        after_commit.discard(session)
        await engine.run_batch(session, index)
        await session.commit()
        await after_commit.run(session)
        while (message := await listener.get_message(ignore_subscribe_messages=True, timeout=0.3)) is not None:
            if json.loads(message["data"])["type"] == "reposition":
                hints.append(json.loads(message["data"]))
    await listener.aclose()
    [hint] = hints
    lat, lon = h3.cell_to_latlng(busy)
    assert hint["reason"] == "demand" and hint["cell"] == busy
    assert hint["area"] == {"type": "Point", "coordinates": [round(lon, 4), round(lat, 4)]}
    assert 0 < hint["distance_m"] < 4000
