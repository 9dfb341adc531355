"""Adaptive batching (issue 17): with ample supply an order nobody competes with is offered in
the round it arrives, a contended one waits a window chosen from the contention, and scarce
supply batches everything every round."""

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from matching import adaptive
from matching import service as engine
from matching.model import CertificationView, MatchingConfig, OrderView, TechnicianView
from tests.factories import online_technician
from tests.matching.test_live_engine import CENTER, new_order, open_offer

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
REPAIR = (CertificationView("repair", True),)


def order(oid: str, lon: float, age_s: float = 0.0) -> OrderView:
    return OrderView(oid, lon, CENTER[1], "repair", "routine", NOW - timedelta(seconds=age_s), NOW + timedelta(hours=4))


def tech(tid: str, lon: float, **kw) -> TechnicianView:  # noqa: ANN003
    return TechnicianView(tid, lon, CENTER[1], "online", REPAIR, 0, 1, 4.5, NOW, **kw)


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
