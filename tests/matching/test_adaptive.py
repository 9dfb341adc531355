"""Adaptive batching (issue 17): with ample supply an order nobody competes with is offered in
the round it arrives, a contended one waits a window chosen from the contention, and scarce
supply batches everything every round."""

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.models import ServiceKind
from kit.db import database_now
from matching import adaptive, assign
from matching import service as engine
from matching.model import CertificationView, MatchingConfig, OrderView, TechnicianView
from tests.factories import online_technician
from tests.matching.test_live_engine import CENTER, new_order, open_offer

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
REPAIR = (CertificationView("repair", True),)


def order(oid: str, lon: float, age_s: float = 0.0) -> OrderView:
    return OrderView(oid, lon, CENTER[1], "repair", "routine", NOW - timedelta(seconds=age_s), NOW + timedelta(hours=4))


def tech(tid: str, lon: float, rating: float = 4.5, **kw) -> TechnicianView:  # noqa: ANN003
    return TechnicianView(tid, lon, CENTER[1], "online", REPAIR, 0, 1, rating, NOW, **kw)


def test_the_window_grows_with_contention_and_is_bounded() -> None:
    assert adaptive.window_s(0, 10) == 0.0
    assert adaptive.window_s(1, 20) == pytest.approx(1.0)
    assert adaptive.window_s(5, 20) == pytest.approx(5.0)
    assert adaptive.window_s(10, 20) == adaptive.window_s(50, 20) == adaptive.MAX_WINDOW_S


def test_ample_supply_offers_uncontended_orders_now_and_holds_contended_ones_for_the_window() -> None:
    far = CENTER[0] + 0.2
    techs = [tech("a1", CENTER[0] + 0.001), tech("a2", CENTER[0] + 0.002), tech("b1", far + 0.001),
             tech("b2", far + 0.002), tech("c1", far + 0.003), tech("c2", far + 0.004)]
    orders = [order("alone", CENTER[0]), order("x", far), order("y", far + 0.0005)]
    candidates = {"alone": techs[:2], "x": techs[2:], "y": techs[2:]}
    held = adaptive.split(orders, candidates, NOW, MatchingConfig())
    assert [o.id for o in held.now] == ["alone"] and [o.id for o in held.held] == ["x", "y"]
    assert held.window_s == pytest.approx(10.0)  # 3 orders on 6 free slots: the edge of ample
    later = adaptive.split([order("alone", CENTER[0]), order("x", far, 10), order("y", far + 0.0005, 3)],
                           candidates, NOW, MatchingConfig())
    assert [o.id for o in later.now] == ["alone", "x"]


def test_ample_supply_sends_whoever_free_arrives_first_and_the_batch_gets_the_rest() -> None:
    """Greedy's choice where nobody competes: not the better-rated, long-idle technician 300 m
    further, nor one finishing a job beside the order (an end of job is a guess, a free one is
    sure). The contended orders' batch, once their window is over, never reuses him."""
    far = CENTER[0] + 0.2
    nearest = tech("nearest", CENTER[0] + 0.002, rating=4.0)
    starred = tech("starred", CENTER[0] + 0.005, rating=5.0, idle_since=NOW - timedelta(hours=2))
    finishing = tech("finishing", CENTER[0] + 0.0005, free_in_s=60.0)
    b1, b2, b3, b4 = (tech(f"b{i}", far + i / 1000) for i in range(1, 5))
    alone, x, y = order("alone", CENTER[0]), order("x", far, 30), order("y", far + 0.0005, 30)
    candidates = {"alone": [finishing, starred, nearest], "x": [b1, b2, b3, b4], "y": [b1, b2, b3, b4]}
    config = MatchingConfig()
    assert assign.best_candidate(alone, candidates["alone"], NOW, config).technician_id == "starred"  # by cost
    chosen, part = adaptive.assign_round([alone, x, y], candidates, NOW, config)
    assert part.alone == {"alone"} and not part.held
    by_order = {a.order_id: a.technician_id for a in chosen}
    assert by_order["alone"] == "nearest" and {by_order["x"], by_order["y"]} == {"b1", "b2"}
    # Two uncontended orders (their best by cost are the starred ones on either side) whose first
    # arrival is the same low-rated technician between them: the second takes its next.
    low = tech("low", CENTER[0] + 0.002, rating=3.5)
    west = [tech(f"w{i}", CENTER[0] - 0.003 - i / 2000, rating=5.0) for i in (0, 1)]
    east = [tech(f"e{i}", CENTER[0] + 0.006 + i / 2000, rating=5.0) for i in (0, 1)]
    everyone = [low, *west, *east]
    chosen, part = adaptive.assign_round([alone, order("x", CENTER[0] + 0.003)], {"alone": everyone, "x": everyone},
                                         NOW, config)
    assert part.alone == {"alone", "x"}
    assert [(a.order_id, a.technician_id) for a in chosen] == [("alone", "low"), ("x", "e0")]


def test_scarce_supply_batches_every_order_in_every_round_and_reserves_do_not_count() -> None:
    techs = [tech("a1", CENTER[0] + 0.001), tech("r", CENTER[0] + 0.002, reserved=True),
             tech("r2", CENTER[0] + 0.003, reserved=True)]
    orders = [order("o", CENTER[0]), order("p", CENTER[0] + 0.0005)]
    split = adaptive.split(orders, {"o": techs, "p": techs}, NOW, MatchingConfig())
    assert [o.id for o in split.now] == ["o", "p"] and split.held == []


async def test_live_rounds_offer_uncontended_orders_at_once_and_contended_ones_after_the_window(
        session: AsyncSession, index) -> None:  # noqa: ANN001
    far = CENTER[0] + 0.1  # ~10 km: the two groups share no technician
    for lon in (CENTER[0] + 0.001, CENTER[0] + 0.002, far + 0.001, far + 0.002, far + 0.003, far + 0.004):
        await online_technician(session, index, lon, CENTER[1])
    alone = await new_order(session)
    x = await new_order(session, lon=far, lat=CENTER[1])
    y = await new_order(session, lon=far + 0.0005, lat=CENTER[1])
    created = max(o.created_at for o in (alone, x, y))
    await engine.run_batch(session, index, created)
    assert await open_offer(session, alone.id) is not None  # no contention, no wait
    assert await open_offer(session, x.id) is None and await open_offer(session, y.id) is None
    await engine.run_batch(session, index, created + timedelta(seconds=adaptive.MAX_WINDOW_S + 1))
    assert await open_offer(session, x.id) is not None and await open_offer(session, y.id) is not None


def test_a_batch_keeps_an_order_for_the_technician_finishing_next_to_it() -> None:
    """Look-ahead: B, done in 5 min beside `near`, reaches it before A (free, ~5 km away) could;
    so A takes the other order and `near` is offered to nobody this round. B is never offered."""
    near, other = order("near", CENTER[0]), order("other", CENTER[0] + 0.05)
    a = tech("a", CENTER[0] + 0.06)
    b = tech("b", CENTER[0] + 0.001, free_in_s=300.0)
    chosen = assign.batch([near, other], {"near": [a, b], "other": [a, b]}, NOW, MatchingConfig())
    assert [(x.order_id, x.technician_id) for x in chosen] == [("other", "a")]
    # Not yet free: never offered by the one-at-a-time paths either.
    assert assign.best_candidate(near, [b], NOW, MatchingConfig()) is None
    assert assign.greedy([near], {"near": [b]}, NOW, MatchingConfig()) == []
    # Nor counted as free supply by adaptive batching.
    assert adaptive.split([near], {"near": [b, b]}, NOW, MatchingConfig()).now == [near]


async def test_live_rounds_keep_an_order_for_a_technician_finishing_a_job_beside_it(
        session: AsyncSession, index) -> None:  # noqa: ANN001
    finishing = await online_technician(session, index, CENTER[0] + 0.001, CENTER[1])
    far = await online_technician(session, index, CENTER[0] + 0.06, CENTER[1])  # ~5 km
    job = await new_order(session, lon=CENTER[0] + 0.001, lat=CENTER[1])
    typical = timedelta(minutes=(await session.get(ServiceKind, job.kind)).typical_duration_min)
    now = await database_now(session)
    job.technician_id, job.status, job.updated_at = finishing.technician.id, "in_service", now - typical + timedelta(minutes=5)
    session.add(job)
    waiting = await new_order(session)
    await engine.run_batch(session, index, now)
    assert await open_offer(session, waiting.id) is None  # kept for him: there in ~5 min, the other in ~16
    # A job with long to go: the free technician goes.
    job.updated_at = now
    session.add(job)
    await engine.run_batch(session, index, now)
    offer = await open_offer(session, waiting.id)
    assert offer is not None and offer.technician_id == far.technician.id


async def test_an_emergency_nobody_free_reaches_in_time_waits_for_a_technician_finishing_beside_it(
        session: AsyncSession, index) -> None:  # noqa: ANN001
    finishing = await online_technician(session, index, CENTER[0] + 0.001, CENTER[1], kinds=("repair", "emergency"))
    job = await new_order(session, lon=CENTER[0] + 0.001, lat=CENTER[1])
    typical = timedelta(minutes=(await session.get(ServiceKind, job.kind)).typical_duration_min)
    now = await database_now(session)
    job.technician_id, job.status, job.updated_at = finishing.technician.id, "in_service", now - typical + timedelta(minutes=3)
    session.add(job)
    # Free, certified, in range, but too far to make the SLA (10 % past it at the configured speed).
    config = engine.matching_config()
    leak = await new_order(session, kind="emergency_leak", lon=CENTER[0] + 0.0005, lat=CENTER[1])
    sla_s = (leak.sla_deadline - leak.created_at).total_seconds()
    too_far_deg = 1.1 * sla_s * config.speed_kmh / 3.6 / config.detour_factor / 96_100
    assert too_far_deg * 96_100 < engine.ladder_for("emergency").round_radius_m[-1]  # found by the widest round
    await online_technician(session, index, CENTER[0] + too_far_deg, CENTER[1], kinds=("repair", "emergency"))
    await engine.dispatch_now(session, index, leak.id, await database_now(session))
    assert await open_offer(session, leak.id) is None  # the one finishing is there in ~3 min
    # Someone free who reaches it within its SLA is sent at once, however soon the other is done.
    free = await online_technician(session, index, CENTER[0] + too_far_deg / 2, CENTER[1], kinds=("repair", "emergency"))
    await engine.dispatch_now(session, index, leak.id, await database_now(session))
    offer = await open_offer(session, leak.id)
    assert offer is not None and offer.technician_id == free.technician.id
