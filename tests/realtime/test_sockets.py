"""The technician's and the customer's sockets across two API worker processes."""

import asyncio
import json
import uuid
from datetime import datetime, timezone

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from dispatch.models import Order
from dispatch.technicians import PositionCopy, record_last_positions
from dispatch.service import Actor, transition
from tests.factories import make_customer, make_technician
from tests.support.sockets import recv_until

CENTER = (120.155, 30.274)


def connect(base: str, path: str, token: str, **options):  # noqa: ANN003, ANN201
    """A native client: the token in the Authorization header (browsers send it as the first message)."""
    return websockets.connect(base.replace("http://", "ws://") + path,
                              additional_headers={"Authorization": f"Bearer {token}"}, **options)


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def request(ws, message: dict, timeout: float = 10.0) -> dict:  # noqa: ANN001
    """Send one client message and wait for the ack or error with its id."""
    await ws.send(json.dumps({"v": 1, **message}))
    return await recv_until(ws, lambda m: m.get("id") == message["id"] and m["type"] in ("ack", "error", "pong"), timeout)


def fix(lon: float, lat: float) -> dict:
    return {"type": "location", "id": uuid.uuid4().hex, "lon": lon, "lat": lat,
            "ts": datetime.now(timezone.utc).isoformat()}


@pytest.fixture
async def people(committed_sessions):  # noqa: ANN001, ANN201
    async with committed_sessions() as session:
        customer = await make_customer(session, *CENTER)
        technician = await make_technician(session)
        await session.commit()
    return customer, technician


async def test_offer_made_on_one_worker_reaches_the_socket_on_the_other_and_the_customer_follows(
    api_worker, people, committed_sessions,  # noqa: ANN001
) -> None:
    customer, technician = people
    worker_a = api_worker()
    worker_b = api_worker(GASDISPATCH_EMBEDDED_WORKER="true", GASDISPATCH_BATCH_WINDOW_S="0.2")
    async with connect(worker_a, "/v1/ws/technician", token_of(technician.headers)) as tech_ws:
        assert (await request(tech_ws, {"type": "go_online", "id": "on-1"}))["status"] == "online"
        assert (await request(tech_ws, fix(CENTER[0] + 0.002, CENTER[1])))["outcome"] == "accepted"
        async with httpx.AsyncClient(base_url=worker_b) as http:
            created = await http.post("/v1/orders", headers=customer.headers,
                                      json={"kind": "repair", "address_id": str(customer.address.id)})
        order_id = created.json()["id"]
        async with connect(worker_b, f"/v1/ws/orders/{order_id}", token_of(customer.headers)) as order_ws:
            offer = await recv_until(tech_ws, lambda m: m["type"] == "offer")
            assert offer["offer"]["order_id"] == order_id
            accepted = await request(tech_ws, {"type": "accept_offer", "id": "acc-1", "offer_id": offer["offer"]["offer_id"]})
            assert accepted["type"] == "ack" and accepted["status"] == "accepted"
            await recv_until(order_ws, lambda m: m["type"] == "status" and m["status"] == "accepted")
            await request(tech_ws, fix(CENTER[0] + 0.00199, CENTER[1]))
            position = await recv_until(order_ws, lambda m: m["type"] == "position")
            assert position["position"]["coordinates"] == [CENTER[0] + 0.00199, CENTER[1]]


async def test_reconnect_within_the_offer_window_gets_the_offer_again(api_worker, people, committed_sessions) -> None:  # noqa: ANN001
    customer, technician = people
    worker = api_worker(GASDISPATCH_EMBEDDED_WORKER="true", GASDISPATCH_BATCH_WINDOW_S="0.2",
                        GASDISPATCH_OFFER_TIMEOUT_S="4")
    token = token_of(technician.headers)
    async with connect(worker, "/v1/ws/technician", token) as ws:
        await request(ws, {"type": "go_online", "id": "on"})
        await request(ws, fix(CENTER[0] + 0.002, CENTER[1]))
        async with httpx.AsyncClient(base_url=worker) as http:
            order_id = (await http.post("/v1/orders", headers=customer.headers,
                                        json={"kind": "repair", "address_id": str(customer.address.id)})).json()["id"]
        first = await recv_until(ws, lambda m: m["type"] == "offer")
    # The socket dropped mid-offer; the phone reconnects and is offered the same job again.
    async with connect(worker, "/v1/ws/technician", token) as ws:
        again = await recv_until(ws, lambda m: m["type"] == "offer")
        assert again["offer"]["offer_id"] == first["offer"]["offer_id"]
        accepted = await request(ws, {"type": "accept_offer", "id": "acc", "offer_id": again["offer"]["offer_id"]})
        assert accepted["status"] == "accepted"
    async with committed_sessions() as session:
        assert (await session.get(Order, uuid.UUID(order_id))).status == "accepted"


async def test_after_the_offer_window_the_offer_has_moved_on(api_worker, people, committed_sessions) -> None:  # noqa: ANN001
    customer, technician = people
    worker = api_worker(GASDISPATCH_EMBEDDED_WORKER="true", GASDISPATCH_BATCH_WINDOW_S="0.2",
                        GASDISPATCH_OFFER_TIMEOUT_S="1")
    token = token_of(technician.headers)
    async with connect(worker, "/v1/ws/technician", token) as ws:
        await request(ws, {"type": "go_online", "id": "on"})
        await request(ws, fix(CENTER[0] + 0.002, CENTER[1]))
        async with httpx.AsyncClient(base_url=worker) as http:
            await http.post("/v1/orders", headers=customer.headers,
                            json={"kind": "repair", "address_id": str(customer.address.id)})
        first = await recv_until(ws, lambda m: m["type"] == "offer")
        await recv_until(ws, lambda m: m["type"] == "offer_withdrawn" and m["offer_id"] == first["offer"]["offer_id"])
    async with connect(worker, "/v1/ws/technician", token) as ws:
        late = await request(ws, {"type": "accept_offer", "id": "late", "offer_id": first["offer"]["offer_id"]})
        assert late["type"] == "error" and late["code"] == "offer-not-acceptable"


async def test_bad_frames_get_errors_and_do_not_disturb_other_sockets(api_worker, people) -> None:  # noqa: ANN001
    _, technician = people
    worker = api_worker(GASDISPATCH_WS_RATE_PER_S="5", GASDISPATCH_WS_BURST="5")
    token = token_of(technician.headers)
    async with (connect(worker, "/v1/ws/technician", token, max_size=None) as bad,
                connect(worker, "/v1/ws/technician", token) as good):
        await bad.send("this is not json")
        assert (await recv_until(bad, lambda m: m["type"] == "error"))["detail"] == "malformed JSON"
        unknown = await request(bad, {"type": "teleport", "id": "u1"})
        assert unknown["type"] == "error" and "teleport" in unknown["detail"]
        missing = await request(bad, {"type": "accept_offer", "id": "m1"})
        assert missing["type"] == "error" and "offer_id" in missing["detail"]
        await asyncio.sleep(1.2)  # refill the bucket
        await bad.send(b"\x00\x01")
        assert (await recv_until(bad, lambda m: m["type"] == "error"))["detail"] == "text frames only"
        for i in range(30):
            await bad.send(json.dumps({"v": 1, "type": "ping", "id": f"flood-{i}"}))
        throttled = await recv_until(bad, lambda m: m.get("code") == "throttled")
        assert throttled["type"] == "error"
        pong = await request(good, {"type": "ping", "id": "still-here"})
        assert pong["type"] == "pong"
        # The flooding socket itself stays open and usable once it slows down.
        await asyncio.sleep(1.5)
        assert (await request(bad, {"type": "ping", "id": "calm"}, timeout=5))["type"] == "pong"


async def test_a_repeated_message_id_is_acknowledged_again_without_acting_twice(api_worker, people) -> None:  # noqa: ANN001
    _, technician = people
    worker = api_worker()
    token = token_of(technician.headers)
    async with connect(worker, "/v1/ws/technician", token) as ws:
        first = await request(ws, {"type": "go_online", "id": "on"})
        second = await request(ws, {"type": "go_online", "id": "on"})
        assert first == second and first["status"] == "online"
        # A fix sent twice needs no replay guard: its time stamp makes the second one stale.
        message = fix(CENTER[0], CENTER[1])
        assert (await request(ws, message))["outcome"] == "accepted"
        assert (await request(ws, message))["outcome"] == "stale"
        newer = fix(CENTER[0] + 0.00001, CENTER[1])
        assert (await request(ws, newer))["outcome"] == "accepted"


async def test_sockets_refuse_strangers(api_worker, people, committed_sessions) -> None:  # noqa: ANN001
    customer, technician = people
    async with committed_sessions() as session:
        other = await make_customer(session)
        await session.commit()
    worker = api_worker()
    async with httpx.AsyncClient(base_url=worker) as http:
        order_id = (await http.post("/v1/orders", headers=customer.headers,
                                    json={"kind": "repair", "address_id": str(customer.address.id)})).json()["id"]

    async def close_code(path: str, token: str) -> int:
        async with connect(worker, path, token) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
        return closed.value.rcvd.code

    assert await close_code(f"/v1/ws/orders/{order_id}", token_of(other.headers)) == 4403
    assert await close_code(f"/v1/ws/orders/{order_id}", token_of(technician.headers)) == 4403
    assert await close_code(f"/v1/ws/orders/{order_id}", "garbage") == 4401
    assert await close_code("/v1/ws/technician", token_of(customer.headers)) == 4403


async def test_customer_sees_positions_only_between_acceptance_and_completion(api_worker, people, committed_sessions) -> None:  # noqa: ANN001
    customer, technician = people
    worker = api_worker(GASDISPATCH_EMBEDDED_WORKER="true", GASDISPATCH_BATCH_WINDOW_S="0.2")
    async with connect(worker, "/v1/ws/technician", token_of(technician.headers)) as tech_ws:
        await request(tech_ws, {"type": "go_online", "id": "on"})
        await request(tech_ws, fix(CENTER[0] + 0.002, CENTER[1]))
        async with httpx.AsyncClient(base_url=worker) as http:
            order_id = (await http.post("/v1/orders", headers=customer.headers,
                                        json={"kind": "repair", "address_id": str(customer.address.id)})).json()["id"]
        async with connect(worker, f"/v1/ws/orders/{order_id}", token_of(customer.headers)) as order_ws:
            offer = await recv_until(tech_ws, lambda m: m["type"] == "offer")
            await request(tech_ws, fix(CENTER[0] + 0.00199, CENTER[1]))  # offered, not accepted: invisible
            with pytest.raises(TimeoutError):
                await recv_until(order_ws, lambda m: m["type"] == "position", timeout=0.5)
            await request(tech_ws, {"type": "accept_offer", "id": "acc", "offer_id": offer["offer"]["offer_id"]})
            await recv_until(order_ws, lambda m: m["type"] == "status" and m["status"] == "accepted")
            await request(tech_ws, fix(CENTER[0] + 0.00198, CENTER[1]))
            seen = await recv_until(order_ws, lambda m: m["type"] == "position")
            assert seen["position"]["coordinates"][0] == pytest.approx(CENTER[0] + 0.00198)
            # A page opened now shows him at once, not after his next fix.
            async with connect(worker, f"/v1/ws/orders/{order_id}", token_of(customer.headers)) as late_ws:
                last = await recv_until(late_ws, lambda m: m["type"] == "position", timeout=2)
                assert last["position"]["coordinates"][0] == pytest.approx(CENTER[0] + 0.00198)
            async with committed_sessions() as session:
                # The field rules (door check, geofence, report) have their own tests; here only
                # the order's status matters, so the test moves it directly.
                for action in ("depart", "arrive", "start_service", "complete"):
                    await transition(session, uuid.UUID(order_id), action, Actor.system("test"),
                                     payload={"report_id": "test-report"} if action == "complete" else None)
                await session.commit()
            # The relay runs in the worker's loop; wait until the customer has seen the completion.
            await recv_until(order_ws, lambda m: m["type"] == "status" and m["status"] == "completed")
            await request(tech_ws, fix(CENTER[0] + 0.00197, CENTER[1]))
            with pytest.raises(TimeoutError):
                await recv_until(order_ws, lambda m: m["type"] == "position", timeout=1.5)


async def test_socket_fixes_reach_postgresql_at_the_lower_rate_and_never_go_back_in_time(
    api_worker, people, committed_sessions,  # noqa: ANN001
) -> None:
    """The durable copy (what the index is rebuilt from after Redis lost its data): the first fix,
    then none until `position_persist_every_s` has passed by the fixes' own clock."""
    from datetime import timedelta

    from geoalchemy2.shape import to_shape

    _, technician = people
    worker = api_worker(GASDISPATCH_POSITION_PERSIST_EVERY_S="30")
    start = datetime.now(timezone.utc) - timedelta(seconds=60)

    def at(lon: float, seconds: float) -> dict:
        return {**fix(lon, CENTER[1]), "ts": (start + timedelta(seconds=seconds)).isoformat()}

    async def stored() -> tuple[float, datetime]:
        async with committed_sessions() as session:
            row = await session.get(type(technician.technician), technician.technician.id, populate_existing=True)
            return to_shape(row.last_location).x, row.last_seen_at

    async with connect(worker, "/v1/ws/technician", token_of(technician.headers)) as ws:
        assert (await request(ws, {"type": "go_online", "id": "on-1"}))["status"] == "online"
        assert (await request(ws, at(CENTER[0] + 0.001, 0)))["outcome"] == "accepted"
        assert (await stored()) == (pytest.approx(CENTER[0] + 0.001), start)
        assert (await request(ws, at(CENTER[0] + 0.002, 10)))["outcome"] == "accepted"  # in Redis only
        assert (await stored())[0] == pytest.approx(CENTER[0] + 0.001)
        assert (await request(ws, at(CENTER[0] + 0.003, 31)))["outcome"] == "accepted"
        assert (await stored()) == (pytest.approx(CENTER[0] + 0.003), start + timedelta(seconds=31))
    # A copy older than the row's (another API process's batch landing late) changes nothing.
    async with committed_sessions() as session:
        await record_last_positions(session, [PositionCopy(technician.technician.id, CENTER[0], CENTER[1],
                                                           start + timedelta(seconds=20))])
        await session.commit()
    assert (await stored()) == (pytest.approx(CENTER[0] + 0.003), start + timedelta(seconds=31))
