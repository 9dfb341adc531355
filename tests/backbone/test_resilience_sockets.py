"""Sockets across a Redis restart: they stay open, and what was published while Redis was gone
reaches the client (the server resends after resubscribing; the client can ask by `seq`)."""

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from dispatch.service import Actor, transition
from tests.backbone.resilience_support import recv_until
from tests.factories import make_customer, make_technician

CENTER = (120.155, 30.274)


class PrivateRedis:
    """A redis-server of this test's own, so stopping it disturbs nobody else."""

    def __init__(self, directory: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.directory = directory
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    yield server
    server.stop()


def connect(base: str, path: str, headers: dict[str, str]):  # noqa: ANN201
    return websockets.connect(base.replace("http://", "ws://") + path, additional_headers=headers)


async def test_sockets_stay_open_across_a_redis_restart_and_resend_the_missed_update(
    api_process, private_redis: PrivateRedis, committed_sessions,  # noqa: ANN001
) -> None:
    async with committed_sessions() as session:
        customer = await make_customer(session, *CENTER)
        technician = await make_technician(session)
        await session.commit()
    base = api_process(GASDISPATCH_REDIS_URL=f"redis://127.0.0.1:{private_redis.port}/0")
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        created = await http.post("/v1/orders", headers=customer.headers,
                                  json={"kind": "repair", "address_id": str(customer.address.id)})
    order_id = created.json()["id"]
    async with connect(base, f"/v1/ws/orders/{order_id}", customer.headers) as order_ws, \
            connect(base, "/v1/ws/technician", technician.headers) as tech_ws:
        first = await recv_until(order_ws, lambda m: m["type"] == "status")
        before = first["seq"]
        assert before > 0

        private_redis.stop()
        # The order changes while Redis is gone: its push can reach nobody.
        async with committed_sessions() as session:
            await transition(session, uuid.UUID(order_id), "cancel", Actor("customer", str(customer.account.id)),
                             reason="changed my mind")
            await session.commit()
        await tech_ws.send(json.dumps({"v": 1, "type": "ping", "id": "during"}))
        assert (await recv_until(tech_ws, lambda m: m.get("id") == "during"))["type"] == "pong"
        private_redis.start()

        # The server resubscribes by itself and resends what changed meanwhile, with its seq.
        missed = await recv_until(order_ws, lambda m: m["type"] == "status" and m["status"] == "cancelled")
        assert missed["seq"] > before
        # A client that reconnected elsewhere asks for it by seq and gets exactly it.
        await order_ws.send(json.dumps({"v": 1, "type": "resume", "id": "r1", "after": before}))
        assert (await recv_until(order_ws, lambda m: m.get("id") == "r1"))["type"] == "ack"
        again = await recv_until(order_ws, lambda m: m["type"] == "status")
        assert (again["status"], again["seq"]) == ("cancelled", missed["seq"])

        # The technician's socket came through too, and works with Redis again.
        await tech_ws.send(json.dumps({"v": 1, "type": "go_online", "id": "on-after"}))
        reply = await recv_until(tech_ws, lambda m: m.get("id") == "on-after")
        assert reply["type"] == "ack", reply
