"""The operations console's actions through the API: order detail with the offer candidates and
why, assign and reassign (conditional, both technicians told, the previous one released), cancel,
messages, the certification queue, hazards resolved with evidence, and the ops socket."""

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import websockets
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import assignments
from dispatch.errors import IllegalTransition
from kit import after_commit
from kit.events import drain
from dispatch.field.models import Hazard
from dispatch.models import Certification, Notification, Order, OrderEvent, Technician, TrainingRecord
from dispatch.alerts import ops_channel
from kit.config import get_settings
from dispatch.service import Actor, create_order
from dispatch.states import next_state
from matching import service as engine
from matching.models import Offer
from tests.factories import make_customer, make_staff, make_technician
from tests.support.sockets import recv_until

CENTER = (120.155, 30.274)


@pytest.fixture
def index(redis):  # noqa: ANN001, ANN201
    return engine.geo_index(redis)


async def online(session: AsyncSession, index, metres_east: float, **kw):  # noqa: ANN001, ANN003, ANN201
    ctx = await make_technician(session, **kw)
    await engine.go_online(session, index, ctx.technician)
    await engine.record_position(session, index, ctx.technician, lon=CENTER[0] + metres_east / 96_200, lat=CENTER[1],
                                 at=datetime.now(timezone.utc))
    return ctx


async def matching_order(session: AsyncSession, kind: str = "repair") -> Order:
    customer = await make_customer(session, *CENTER)
    order = await create_order(session, customer_id=customer.customer.id, address_id=customer.address.id, kind=kind,
                               actor=Actor("customer", str(customer.account.id)))
    await drain(session)
    return await session.get(Order, order.id, populate_existing=True)


async def offered_order(session: AsyncSession, index) -> tuple[Order, Offer]:  # noqa: ANN001
    order = await matching_order(session)
    await engine.run_batch(session, index)
    offer = (await session.exec(select(Offer).where(Offer.order_id == order.id, Offer.status == "offered"))).one()
    return order, offer


async def notifications_of(session: AsyncSession, technician: Technician, kind: str) -> list[Notification]:
    return list((await session.exec(select(Notification).where(
        Notification.account_id == technician.account_id, Notification.kind == kind))).all())


@pytest.fixture
async def admin(session: AsyncSession) -> dict[str, str]:
    return (await make_staff(session, "admin"))[1]


@pytest.mark.parametrize("role", ["customer", "technician", "system"])
def test_only_operations_may_assign(role: str) -> None:
    with pytest.raises(IllegalTransition, match="only operations"):
        next_state("matching", "assign", role)


async def test_order_detail_lists_each_candidate_with_why_picked_or_skipped(
    client: AsyncClient, session: AsyncSession, index, admin,  # noqa: ANN001
) -> None:
    picked = await online(session, index, 800)
    uncertified = await online(session, index, 200, kinds=("inspection",))
    order, offer = await offered_order(session, index)
    assert offer.technician_id == picked.technician.id

    detail = (await client.get(f"/v1/ops/orders/{order.id}", headers=admin)).json()
    assert detail["order"]["status"] == "offered"
    assert [e["action"] for e in detail["events"]] == ["create", "start_matching", "offer"]
    assert detail["offers"][0]["technician_name"] == picked.technician.name
    [round_one] = detail["candidate_rounds"]
    by_id = {c["technician_id"]: c for c in round_one["candidates"]}
    chosen, skipped = by_id[str(picked.technician.id)], by_id[str(uncertified.technician.id)]
    assert chosen["picked"] and chosen["reason"] is None and chosen["certification"] is None
    assert 700 < chosen["distance_m"] < 900 and chosen["eta_s"] > 0 and chosen["max_jobs"] == 1
    assert not skipped["picked"] and skipped["reason"] == "no_certification" == skipped["certification"]
    assert round_one["candidates"][0]["technician_id"] == str(picked.technician.id)
    assert detail["allowed_actions"] == ["assign", "cancel"]


async def test_reassign_gives_the_job_to_the_chosen_technician_and_releases_the_previous_one(
    client: AsyncClient, session: AsyncSession, index, admin,  # noqa: ANN001
) -> None:
    first = await online(session, index, 300)
    order, offer = await offered_order(session, index)
    await engine.accept_offer(session, offer.id, first.technician.id)
    await drain(session)
    second = await online(session, index, 1500)
    assert (await session.get(Technician, first.technician.id, populate_existing=True)).status == "busy"

    response = await client.post(f"/v1/ops/orders/{order.id}/assign", headers=admin,
                                 json={"technician_id": str(second.technician.id), "reason": "车辆故障"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["order"]["technician_id"] == str(second.technician.id) and body["order"]["status"] == "accepted"
    assert body["previous_technician_id"] == str(first.technician.id)
    assert (await session.get(Technician, first.technician.id, populate_existing=True)).status == "online"
    assert (await session.get(Technician, second.technician.id, populate_existing=True)).status == "busy"
    await drain(session)
    [told_previous] = await notifications_of(session, first.technician, "job_reassigned")
    [told_new] = await notifications_of(session, second.technician, "job_assigned")
    assert told_new.payload == {"order_id": str(order.id), "reason": "车辆故障"}
    assert (told_previous.payload["order_id"], told_previous.payload["reason"]) == (str(order.id), "车辆故障")
    event = (await session.exec(select(OrderEvent).where(OrderEvent.order_id == order.id, OrderEvent.action == "assign"))).one()
    assert (event.from_status, event.to_status, event.actor_role) == ("accepted", "accepted", "admin")
    assert event.payload["previous_technician_id"] == str(first.technician.id)
    # The previous technician may no longer work it.
    assert (await client.post(f"/v1/jobs/{order.id}/depart", headers=first.headers)).status_code == 404


async def test_assigning_an_offered_order_withdraws_the_open_offer(
    client: AsyncClient, session: AsyncSession, index, admin,  # noqa: ANN001
) -> None:
    offered_to = await online(session, index, 300)
    order, offer = await offered_order(session, index)
    chosen = await online(session, index, 2500)
    response = await client.post(f"/v1/ops/orders/{order.id}/assign", headers=admin,
                                 json={"technician_id": str(chosen.technician.id)})
    assert response.status_code == 200, response.text
    assert (await session.get(Offer, offer.id, populate_existing=True)).status == "withdrawn"
    with pytest.raises(engine.OfferNotAcceptable):
        await engine.accept_offer(session, offer.id, offered_to.technician.id)
    assert (await session.get(Order, order.id, populate_existing=True)).technician_id == chosen.technician.id


async def test_an_uncertified_or_offline_technician_is_refused_with_422_naming_why(
    client: AsyncClient, session: AsyncSession, index, admin,  # noqa: ANN001
) -> None:
    order = await matching_order(session)
    uncertified = await online(session, index, 300, kinds=("inspection",))
    offline = await make_technician(session)
    expired = await online(session, index, 300)
    for cert in (await session.exec(select(Certification).where(Certification.technician_id == expired.technician.id))).all():
        cert.valid_until = datetime.now(timezone.utc) - timedelta(days=1)
        session.add(cert)
    await session.flush()
    for ctx, reason in ((uncertified, "no_certification"), (offline, "offline"), (expired, "certification_expired")):
        response = await client.post(f"/v1/ops/orders/{order.id}/assign", headers=admin,
                                     json={"technician_id": str(ctx.technician.id)})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"] == "/problems/technician-not-assignable" and problem["reason"] == reason
        assert reason.replace("_", " ") in problem["detail"]
    picker = (await client.get(f"/v1/ops/orders/{order.id}/technicians", headers=admin)).json()["data"]
    reasons = {row["technician_id"]: row["reason"] for row in picker}
    assert reasons[str(offline.technician.id)] == "offline"
    assert reasons[str(uncertified.technician.id)] == "no_certification"
    assert (await session.get(Order, order.id, populate_existing=True)).status == "matching"


async def test_assigning_or_cancelling_an_order_in_a_final_state_is_409_with_the_current_state(
    client: AsyncClient, session: AsyncSession, index, admin,  # noqa: ANN001
) -> None:
    order = await matching_order(session)
    technician = await online(session, index, 300)
    cancelled = await client.post(f"/v1/ops/orders/{order.id}/cancel", headers=admin, json={"reason": "用户电话取消"})
    assert cancelled.status_code == 200 and cancelled.json()["status_reason"] == "用户电话取消"
    for path, body in (("assign", {"technician_id": str(technician.technician.id)}), ("cancel", {"reason": "again"})):
        response = await client.post(f"/v1/ops/orders/{order.id}/{path}", headers=admin, json=body)
        assert response.status_code == 409, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["current_state"] == "cancelled"


async def test_two_operators_reassigning_at_once_one_wins_the_other_gets_409(
    committed_sessions, redis,  # noqa: ANN001
) -> None:
    index = engine.geo_index(redis)
    async with committed_sessions() as session:
        order = await matching_order(session)
        b = await online(session, index, 300)
        c = await online(session, index, 600)
        await session.commit()
    admin = Actor("admin", str(uuid.uuid4()))
    async with committed_sessions() as one, committed_sessions() as two:
        await assignments.assign(one, redis, order.id, b.technician.id, admin)
        racing = asyncio.create_task(assignments.assign(two, redis, order.id, c.technician.id, admin))
        await asyncio.sleep(0.3)  # the second UPDATE waits on the first's row lock
        assert not racing.done()
        await one.commit()
        with pytest.raises(assignments.OrderNotAssignable) as lost:
            await racing
        assert lost.value.extra == {"current_state": "accepted"}
    async with committed_sessions() as session:
        assert (await session.get(Order, order.id)).technician_id == b.technician.id


async def test_operations_message_the_technician_or_the_customer(
    client: AsyncClient, session: AsyncSession, index, admin,  # noqa: ANN001
) -> None:
    order = await matching_order(session)
    refused = await client.post(f"/v1/ops/orders/{order.id}/messages", headers=admin, json={"to": "technician", "text": "hi"})
    assert refused.status_code == 422 and refused.json()["type"] == "/problems/invalid-input"
    technician = await online(session, index, 300)
    assert (await client.post(f"/v1/ops/orders/{order.id}/assign", headers=admin,
                              json={"technician_id": str(technician.technician.id)})).status_code == 200
    sent = await client.post(f"/v1/ops/orders/{order.id}/messages", headers=admin,
                             json={"to": "technician", "text": "请携带备用软管"})
    assert sent.status_code == 201
    [message] = await notifications_of(session, technician.technician, "message")
    assert message.body == "请携带备用软管" and message.payload["order_id"] == str(order.id)
    await client.post(f"/v1/ops/orders/{order.id}/messages", headers=admin, json={"to": "customer", "text": "维修员已改派"})
    detail = (await client.get(f"/v1/ops/orders/{order.id}", headers=admin)).json()
    assert [(m["recipient"], m["text"]) for m in detail["messages"]] == [
        ("technician", "请携带备用软管"), ("customer", "维修员已改派")]
    assert (await client.post(f"/v1/ops/orders/{order.id}/messages", headers=admin,
                              json={"to": "auditor", "text": "x"})).status_code == 422


async def test_certification_queue_names_the_applicant_with_the_training_record(
    client: AsyncClient, session: AsyncSession, admin,  # noqa: ANN001
) -> None:
    applicant = await make_technician(session, kinds=("installation",), status="pending")
    applicant.technician.photo_ref = "/media/tech-1.jpg"
    session.add(TrainingRecord(technician_id=applicant.technician.id, record_type="exam", kind="installation",
                               held_at=datetime.now(timezone.utc), score=88, passed=True, recorded_by=applicant.account.id))
    await session.flush()
    page = (await client.get("/v1/ops/certifications?status=pending", headers=admin)).json()["data"]
    [mine] = [a for a in page if a["applicant"]["id"] == str(applicant.technician.id)]
    assert mine["applicant"]["name"] == "韩梅梅" and mine["photo_ref"] == "/media/tech-1.jpg"
    assert mine["certification"]["kind"] == "installation"
    assert [(r["record_type"], r["score"], r["passed"]) for r in mine["training"]] == [("exam", 88, True)]


async def test_resolving_a_hazard_needs_evidence_closes_it_and_withdraws_its_untaken_followup(
    client: AsyncClient, session: AsyncSession, admin, redis,  # noqa: ANN001
) -> None:
    order = await matching_order(session)
    followup = await matching_order(session)
    now = datetime.now(timezone.utc)
    hazard = Hazard(order_id=order.id, customer_id=order.customer_id, address_id=order.address_id, category="aged_hose",
                    severity="major", deadline_at=now + timedelta(days=7), found_at=now, followup_order_id=followup.id)
    session.add(hazard)
    await session.flush()
    assert (await client.post(f"/v1/ops/hazards/{hazard.id}/resolve", headers=admin, json={"evidence": " "})).status_code == 422
    consoles = redis.pubsub()
    await consoles.subscribe(ops_channel(order.city_id))
    response = await client.post(f"/v1/ops/hazards/{hazard.id}/resolve", headers=admin,
                                 json={"evidence": "用户自行更换软管，已电话回访", "photo_refs": ["/media/hose.jpg"]})
    assert response.status_code == 200, response.text
    await after_commit.run(session)  # the test's session stands for the committed request
    pushed = [json.loads(m["data"])["type"] for m in [await consoles.get_message(ignore_subscribe_messages=True, timeout=1)
                                                      for _ in range(5)] if m]
    await consoles.aclose()
    assert "hazards" in pushed  # every console of the city reloads its open hazards
    assert response.json()["hazard"]["status"] == "fixed"
    assert response.json()["cancelled_followup_order_id"] == str(followup.id)
    assert (await session.get(Order, followup.id, populate_existing=True)).status == "cancelled"
    event = (await session.exec(select(OrderEvent).where(OrderEvent.order_id == order.id,
                                                        OrderEvent.action == "hazard_resolved"))).one()
    assert event.reason == "用户自行更换软管，已电话回访" and event.payload["photo_refs"] == ["/media/hose.jpg"]
    again = await client.post(f"/v1/ops/hazards/{hazard.id}/resolve", headers=admin, json={"evidence": "again"})
    assert again.status_code == 409


def _ws(base: str, token: str):  # noqa: ANN202
    return websockets.connect(base.replace("http://", "ws://") + "/v1/ws/ops",
                              additional_headers={"Authorization": f"Bearer {token}"})


async def test_ops_socket_pushes_order_status_changes_and_alerts_to_admins_only(
    api_worker, committed_sessions, redis,  # noqa: ANN001
) -> None:
    async with committed_sessions() as session:
        customer = await make_customer(session, *CENTER)
        admin_account, admin_headers = await make_staff(session, "admin")
        await session.commit()
    base = api_worker(GASDISPATCH_EMBEDDED_WORKER="true", GASDISPATCH_BATCH_WINDOW_S="0.2")
    async with _ws(base, customer.headers["Authorization"][7:]) as refused:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await refused.recv()
        assert closed.value.rcvd.code == 4403
    async with _ws(base, admin_headers["Authorization"][7:]) as ws:
        await recv_until(ws, lambda m: m["type"] == "ready")
        async with httpx.AsyncClient(base_url=base) as http:
            order = (await http.post("/v1/orders", headers=customer.headers,
                                     json={"kind": "repair", "address_id": str(customer.address.id)})).json()
        pushed = await recv_until(ws, lambda m: m["type"] == "order_status" and m["order_id"] == order["id"])
        assert (pushed["status"], pushed["from_status"], pushed["priority"]) == ("matching", "created", "routine")
        alert = {"v": 1, "type": "alert", "alert": {"id": str(uuid.uuid4()), "kind": "emergency_unaccepted"}}
        await redis.publish(ops_channel(get_settings().city), json.dumps(alert))
        assert (await recv_until(ws, lambda m: m["type"] == "alert"))["alert"] == alert["alert"]
        await ws.send(json.dumps({"v": 1, "type": "ping", "id": "p1"}))
        assert (await recv_until(ws, lambda m: m.get("id") == "p1"))["type"] == "pong"
