"""NB-IoT valve commands through the platform adapter port: an HTTP adapter that a test
platform receives on loopback, retries with backoff and a limit (the give-up is listed for
operations), and the acknowledgement by the platform's signed commandResponse push."""

import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from meters import commands
from meters.models import ValveCommand
from meters.nbiot import sign
from tests.factories import make_staff
from tests.meters.meters_factories import make_device

SECRET = "ctwing-test-secret"


class FakePlatform:
    """The platform's command API on 127.0.0.1: records each request, answers `status`."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict, dict]] = []
        self.status = 200
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                platform.requests.append((dict(self.headers), json.loads(body) | {"_raw": body.decode()}))
                self.send_response(platform.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/commands"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    fake = FakePlatform()
    settings = get_settings()
    monkeypatch.setattr(settings, "meters_webhook_secrets", {"ctwing": SECRET})
    monkeypatch.setattr(settings, "meters_platform_command_urls", {"ctwing": fake.url})
    yield fake
    fake.server.shutdown()


async def push(client: AsyncClient, envelope: dict) -> dict:
    body, ts = json.dumps(envelope).encode(), str(int(time.time()))
    response = await client.post("/v1/telemetry/ctwing", content=body, headers={
        "X-Timestamp": ts, "X-Signature": sign(SECRET, ts, body), "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    return response.json()


async def alarm_with_nbiot_valve(client: AsyncClient, session: AsyncSession, n: int) -> ValveCommand:
    detector, customer = await make_device(session, kind="detector", protocol="nbiot", external_id=f"86100000000810{n}")
    await make_device(session, protocol="nbiot", external_id=f"86100000000820{n}", customer=customer, has_valve=True)
    await push(client, {"messageType": "dataReport", "productId": "17000001", "IMEI": detector.external_id,
                        "timestamp": int(time.time() * 1000), "payload": {"serviceData": {"gas_sensor_state": 1}}})
    return (await session.exec(select(ValveCommand))).scalar_one()


async def test_nbiot_valve_close_reaches_the_platform_and_is_acknowledged(
    client: AsyncClient, session: AsyncSession, platform: FakePlatform,
) -> None:
    command = await alarm_with_nbiot_valve(client, session, 1)
    assert (command.channel, command.status) == ("platform", "queued")
    taken = await commands.deliver_due(session, settings=get_settings(), now=datetime.now(timezone.utc))
    assert taken == 1
    headers, body = platform.requests[0]
    assert (body["taskId"], body["IMEI"], body["command"]) == (str(command.id), "861000000008201", "close")
    assert headers["X-Signature"] == sign(SECRET, headers["X-Timestamp"], body["_raw"].encode())
    await session.refresh(command)
    assert (command.status, command.attempts) == ("sent", 1)

    answer = await push(client, {"messageType": "commandResponse", "productId": "17000002", "IMEI": "861000000008201",
                                 "taskId": str(command.id), "result": {"resultCode": "SUCCESS"}})
    assert answer["status"] == "acknowledged"
    await session.refresh(command)
    assert command.status == "acknowledged" and command.replied_at is not None


async def test_platform_command_retries_with_backoff_then_gives_up_visibly(
    client: AsyncClient, session: AsyncSession, platform: FakePlatform,
) -> None:
    platform.status = 503
    command = await alarm_with_nbiot_valve(client, session, 2)
    settings = get_settings()
    now = datetime.now(timezone.utc)
    await commands.deliver_due(session, settings=settings, now=now)
    await session.refresh(command)
    assert (command.status, command.attempts, command.last_error) == ("queued", 1, "HTTP 503")
    assert command.next_attempt_at == now + timedelta(seconds=settings.meters_command_backoff_s)
    assert await commands.deliver_due(session, settings=settings, now=now + timedelta(seconds=1)) == 0
    assert len(platform.requests) == 1  # not due yet
    while command.status == "queued":
        await commands.deliver_due(session, settings=settings, now=command.next_attempt_at)
        await session.refresh(command)
    assert (command.status, command.attempts) == ("failed", settings.meters_command_max_attempts)
    assert len(platform.requests) == settings.meters_command_max_attempts

    _, admin = await make_staff(session, "admin")
    listed = (await client.get("/v1/valve-commands?status=failed", headers=admin)).json()["data"]
    assert [(c["id"], c["last_error"]) for c in listed] == [(str(command.id), "HTTP 503")]


async def test_without_a_command_url_the_recording_adapter_keeps_the_command(
    client: AsyncClient, session: AsyncSession, platform: FakePlatform, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(get_settings(), "meters_platform_command_urls", {})
    command = await alarm_with_nbiot_valve(client, session, 3)
    recorder = commands.adapter_for("ctwing", get_settings())
    assert await commands.deliver_due(session, settings=get_settings(), now=datetime.now(timezone.utc)) == 1
    assert recorder.sent[-1].command_id == command.id and platform.requests == []


async def test_command_response_for_an_unknown_task_changes_nothing(
    client: AsyncClient, session: AsyncSession, platform: FakePlatform,
) -> None:
    await make_device(session, protocol="nbiot", external_id="861000000008299", has_valve=True)
    answer = await push(client, {"messageType": "commandResponse", "productId": "17000002", "IMEI": "861000000008299",
                                 "taskId": str(uuid.uuid4()), "result": {"resultCode": "SUCCESS"}})
    assert answer["status"] == "ignored"
