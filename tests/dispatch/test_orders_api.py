import uuid

from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.events import drain, subscribe, unsubscribe
from tests.factories import make_customer, make_staff


async def test_customer_creates_an_order_and_sees_its_timeline(client: AsyncClient, session: AsyncSession) -> None:
    c = await make_customer(session)
    response = await client.post("/v1/orders", headers=c.headers, json={
        "kind": "repair", "address_id": str(c.address.id), "description": "灶具打不着火"})
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "created"
    assert order["required_certification"] == "repair"
    assert order["price_estimate"] == {"amount_minor": 8000, "currency": "CNY"}
    assert order["location"]["type"] == "Point"
    events = await client.get(f"/v1/orders/{order['id']}/events", headers=c.headers)
    assert [e["to_status"] for e in events.json()["data"]] == ["created"]


async def test_order_created_event_reaches_subscribers_through_the_outbox(client: AsyncClient, session: AsyncSession) -> None:
    seen: list[dict] = []

    async def on_order_created(_session: AsyncSession, payload: dict) -> None:
        seen.append(payload)

    subscribe("dispatch.order_created", on_order_created)
    try:
        c = await make_customer(session)
        created = await client.post("/v1/orders", headers=c.headers, json={"kind": "inspection", "address_id": str(c.address.id)})
        assert seen == []  # nothing leaves before the relay runs after commit
        await drain(session)
        assert [p["order_id"] for p in seen] == [created.json()["id"]]
        await drain(session)
        assert len(seen) == 1  # delivered once
    finally:
        unsubscribe("dispatch.order_created", on_order_created)


async def test_same_idempotency_key_replays_and_other_body_conflicts(client: AsyncClient, session: AsyncSession) -> None:
    c = await make_customer(session)
    headers = {**c.headers, "Idempotency-Key": "order-abc-1"}
    body = {"kind": "repair", "address_id": str(c.address.id)}
    first = await client.post("/v1/orders", headers=headers, json=body)
    second = await client.post("/v1/orders", headers=headers, json=body)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    listed = await client.get("/v1/orders", headers=c.headers)
    assert len(listed.json()["data"]) == 1
    other = await client.post("/v1/orders", headers=headers, json={**body, "description": "different"})
    assert other.status_code == 409
    assert other.json()["type"] == "/problems/idempotency-key-reused"


async def test_customer_cancels_with_a_reason(client: AsyncClient, session: AsyncSession) -> None:
    c = await make_customer(session)
    order = (await client.post("/v1/orders", headers=c.headers, json={"kind": "repair", "address_id": str(c.address.id)})).json()
    no_reason = await client.post(f"/v1/orders/{order['id']}/cancel", headers=c.headers, json={})
    assert no_reason.status_code == 422
    done = await client.post(f"/v1/orders/{order['id']}/cancel", headers=c.headers, json={"reason": "fixed it myself"})
    assert done.status_code == 200
    assert done.json()["status"] == "cancelled"
    assert done.json()["status_reason"] == "fixed it myself"
    again = await client.post(f"/v1/orders/{order['id']}/cancel", headers=c.headers, json={"reason": "again"})
    assert again.status_code == 409
    assert again.json()["type"] == "/problems/illegal-transition"


async def test_pagination_walks_all_orders_once(client: AsyncClient, session: AsyncSession) -> None:
    c = await make_customer(session)
    created = set()
    for _ in range(5):
        r = await client.post("/v1/orders", headers=c.headers, json={"kind": "repair", "address_id": str(c.address.id)})
        created.add(r.json()["id"])
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/orders", headers=c.headers, params=params)).json()
        seen += [o["id"] for o in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(created)
    assert (await client.get("/v1/orders", headers=c.headers, params={"cursor": "%%%"})).status_code == 422


async def test_unknown_kind_and_foreign_address_are_refused(client: AsyncClient, session: AsyncSession) -> None:
    c = await make_customer(session)
    other = await make_customer(session)
    unknown = await client.post("/v1/orders", headers=c.headers, json={"kind": "teleport", "address_id": str(c.address.id)})
    assert unknown.status_code == 404
    foreign = await client.post("/v1/orders", headers=c.headers, json={"kind": "repair", "address_id": str(other.address.id)})
    assert foreign.status_code == 404
    missing = await client.post("/v1/orders", headers=c.headers, json={"kind": "repair", "address_id": str(uuid.uuid4())})
    assert missing.status_code == 404


async def test_admin_sees_every_order_and_can_cancel_after_arrival(client: AsyncClient, session: AsyncSession) -> None:
    from dispatch.service import Actor, transition

    c = await make_customer(session)
    _, admin = await make_staff(session, "admin")
    order = (await client.post("/v1/orders", headers=c.headers, json={"kind": "repair", "address_id": str(c.address.id)})).json()
    oid = uuid.UUID(order["id"])
    for action in ("start_matching", "offer", "accept", "depart", "arrive"):
        await transition(session, oid, action, Actor.system())
    refused = await client.post(f"/v1/orders/{oid}/cancel", headers=c.headers, json={"reason": "too slow"})
    assert refused.status_code == 409
    ok = await client.post(f"/v1/orders/{oid}/cancel", headers=admin, json={"reason": "supply shut by ops"})
    assert ok.status_code == 200
    assert (await client.get("/v1/orders", headers=admin)).json()["data"][0]["id"] == str(oid)


async def test_operations_may_approve_a_followup_for_the_customer_and_the_timeline_shows_it(
    client: AsyncClient, session: AsyncSession,
) -> None:
    from dispatch.service import Actor, create_order

    c = await make_customer(session)
    _, admin = await make_staff(session, "admin")
    followup = await create_order(session, customer_id=c.customer.id, address_id=c.address.id, kind="repair",
                                  actor=Actor.system("field"), source="followup", needs_consent=True)
    listed = (await client.get("/v1/orders", headers=c.headers, params={"status": "awaiting_consent"})).json()["data"]
    assert [o["id"] for o in listed] == [str(followup.id)]
    approved = await client.post(f"/v1/orders/{followup.id}/consent", headers=admin)
    assert (approved.status_code, approved.json()["status"]) == (200, "matching")
    events = (await client.get(f"/v1/orders/{followup.id}/events", headers=c.headers)).json()["data"]
    assert [(e["action"], e["to_status"], e["actor_role"]) for e in events] == [
        ("create", "awaiting_consent", "system"), ("consent", "matching", "admin")]
