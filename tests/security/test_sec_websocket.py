"""Issue #13 items 10 and 11 (sockets), against a real uvicorn worker: both sockets throttle and
bound their frames (uvicorn refuses what is over the application limit), a deeply nested frame
is answered instead of dropping the socket, tokens never ride in the URL, and a socket closes
when its token expires or is revoked."""

import asyncio
import json

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from kit.config import get_settings
from dispatch.security import issue_token
from tests.factories import make_customer, make_technician

CENTER = (120.155, 30.274)


def ws(base: str, path: str, token: str | None = None, query: str = ""):  # noqa: ANN201
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return websockets.connect(base.replace("http://", "ws://") + path + query, additional_headers=headers)


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def reply_to(socket, message_id: str, timeout: float = 5.0) -> dict:  # noqa: ANN001
    async def loop() -> dict:
        while True:
            message = json.loads(await socket.recv())
            if message.get("id") == message_id:
                return message

    return await asyncio.wait_for(loop(), timeout)


async def next_error(socket, timeout: float = 5.0) -> dict:  # noqa: ANN001
    async def loop() -> dict:
        while True:
            message = json.loads(await socket.recv())
            if message["type"] == "error":
                return message

    return await asyncio.wait_for(loop(), timeout)


async def close_code(socket, timeout: float = 10.0) -> int | None:  # noqa: ANN001
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(socket.recv(), timeout)
    return closed.value.rcvd.code if closed.value.rcvd else None


@pytest.fixture
async def people(committed_sessions):  # noqa: ANN001, ANN201
    async with committed_sessions() as session:
        customer = await make_customer(session, *CENTER)
        technician = await make_technician(session)
        await session.commit()
    return customer, technician


async def place_order(base: str, customer) -> str:  # noqa: ANN001
    async with httpx.AsyncClient(base_url=base) as http:
        created = await http.post("/v1/orders", headers=customer.headers,
                                  json={"kind": "repair", "address_id": str(customer.address.id)})
    assert created.status_code == 201, created.text
    return created.json()["id"]


async def test_both_sockets_throttle_bound_and_survive_hostile_frames(api_worker, people) -> None:  # noqa: ANN001
    customer, technician = people
    base = api_worker(GASDISPATCH_WS_RATE_PER_S="5", GASDISPATCH_WS_BURST="5")
    order_path = f"/v1/ws/orders/{await place_order(base, customer)}"
    sockets = [("/v1/ws/technician", token_of(technician.headers)), (order_path, token_of(customer.headers))]
    for path, token in sockets:
        async with ws(base, path, token) as socket:
            # A document nested past Python's recursion limit is an error reply, not a dead socket.
            await socket.send("[" * 30_000 + "]" * 30_000)
            malformed = await next_error(socket)
            assert (malformed["code"], malformed["detail"]) == ("invalid-input", "malformed JSON")
            await socket.send(json.dumps({"v": 1, "type": "no-such-type", "id": "odd"}))
            assert (await next_error(socket))["code"] == "invalid-input"  # a slug the apps translate
            await socket.send(b"\x00\x01")
            assert (await next_error(socket))["detail"] == "text frames only"
            for i in range(30):
                await socket.send(json.dumps({"v": 1, "type": "ping", "id": f"flood-{i}"}))
            assert (await next_error(socket))["code"] == "throttled"
            await asyncio.sleep(1.5)
            await socket.send(json.dumps({"v": 1, "type": "ping", "id": "calm"}))
            assert (await reply_to(socket, "calm"))["type"] == "pong"
        async with ws(base, path, token) as socket:
            # Over the application limit, uvicorn itself refuses the frame (1009) before it is buffered.
            await socket.send("x" * (get_settings().ws_max_message_bytes + 1))
            assert await close_code(socket) == 1009


async def test_tokens_travel_in_a_header_or_the_first_message_never_in_the_url(api_worker, people) -> None:  # noqa: ANN001
    _, technician = people
    base = api_worker()
    token = token_of(technician.headers)
    async with ws(base, "/v1/ws/technician", query=f"?access_token={token}") as socket:
        await socket.send(json.dumps({"v": 1, "type": "ping", "id": "p"}))
        assert await close_code(socket) == 4401
    async with ws(base, "/v1/ws/technician") as socket:
        await socket.send(json.dumps({"v": 1, "type": "auth", "id": "a", "token": token}))
        assert (await reply_to(socket, "a"))["type"] == "ack"
        await socket.send(json.dumps({"v": 1, "type": "ping", "id": "p"}))
        assert (await reply_to(socket, "p"))["type"] == "pong"
    async with ws(base, "/v1/ws/technician", token) as socket:
        await socket.send(json.dumps({"v": 1, "type": "ping", "id": "p"}))
        assert (await reply_to(socket, "p"))["type"] == "pong"


async def test_a_socket_closes_when_its_token_expires_and_a_revoked_token_opens_none(api_worker, people) -> None:  # noqa: ANN001
    customer, technician = people
    base = api_worker()
    short, _ = issue_token(technician.account.id, "technician", ttl_s=3)
    async with ws(base, "/v1/ws/technician", short) as socket:
        await socket.send(json.dumps({"v": 1, "type": "ping", "id": "p"}))
        assert (await reply_to(socket, "p"))["type"] == "pong"
        assert await close_code(socket) == 4401
    order_path = f"/v1/ws/orders/{await place_order(base, customer)}"
    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.post("/v1/auth/logout", headers=customer.headers)).status_code == 204
    async with ws(base, order_path, token_of(customer.headers)) as socket:
        assert await close_code(socket) == 4401
