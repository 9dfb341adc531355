"""Operations alerts over REST: open alerts listed for admins, acknowledged once, one open alert
per (order, kind)."""

from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.alerts import raise_alert
from dispatch.service import Actor, create_order
from tests.factories import make_customer, make_staff


async def an_order(session: AsyncSession):  # noqa: ANN201
    c = await make_customer(session)
    return await create_order(session, customer_id=c.customer.id, address_id=c.address.id, kind="emergency_leak",
                              actor=Actor("customer", str(c.account.id)))


async def test_raising_twice_while_open_is_one_alert(session: AsyncSession) -> None:
    order = await an_order(session)
    first = await raise_alert(session, kind="emergency_unaccepted", level="critical", order_id=order.id, details={})
    again = await raise_alert(session, kind="emergency_unaccepted", level="critical", order_id=order.id, details={"x": 1})
    other = await raise_alert(session, kind="offer_lapsed", level="warning", order_id=order.id, details={})
    assert first.id == again.id != other.id


async def test_admin_lists_open_alerts_and_acknowledges_once(client: AsyncClient, session: AsyncSession) -> None:
    order = await an_order(session)
    alert = await raise_alert(session, kind="emergency_unaccepted", level="critical", order_id=order.id,
                              details={"threshold_s": 120.0})
    admin, headers = await make_staff(session, "admin")
    listed = await client.get("/v1/ops/alerts", headers=headers, params={"open": "true"})
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert [a["id"] for a in body["data"]] == [str(alert.id)] and body["next_cursor"] is None
    assert body["data"][0]["details"] == {"threshold_s": 120.0} and body["data"][0]["order_id"] == str(order.id)

    acked = await client.post(f"/v1/ops/alerts/{alert.id}/acknowledge", headers=headers)
    assert acked.status_code == 200, acked.text
    assert acked.json()["acknowledged_by"] == str(admin.id) and acked.json()["acknowledged_at"]
    twice = await client.post(f"/v1/ops/alerts/{alert.id}/acknowledge", headers=headers)
    assert twice.status_code == 409 and twice.json()["type"] == "/problems/alert-acknowledged"
    assert (await client.get("/v1/ops/alerts", headers=headers)).json()["data"] == []
    everything = (await client.get("/v1/ops/alerts", headers=headers, params={"open": "false"})).json()["data"]
    assert [a["id"] for a in everything] == [str(alert.id)]
    # Acknowledged, the same kind may be raised again for a new occurrence.
    fresh = await raise_alert(session, kind="emergency_unaccepted", level="critical", order_id=order.id, details={})
    assert fresh.id != alert.id


async def test_unknown_alert_and_bad_cursor_are_4xx(client: AsyncClient, session: AsyncSession) -> None:
    _, headers = await make_staff(session, "admin")
    missing = await client.post("/v1/ops/alerts/00000000-0000-0000-0000-000000000000/acknowledge", headers=headers)
    assert missing.status_code == 404 and missing.json()["type"] == "/problems/not-found"
    bad = await client.get("/v1/ops/alerts", headers=headers, params={"cursor": "nope"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
