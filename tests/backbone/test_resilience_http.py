"""Database and Redis outages on a running API process: 503 problem+json with Retry-After,
timed and counted in the latency metric and written to the access log like any answer."""

import asyncio
import json
import socket
import threading
from pathlib import Path

import httpx
import pytest
import structlog
from sqlalchemy.engine import make_url

from kit.config import get_settings
from tests.factories import PASSWORD, make_technician

METRICS_TOKEN = "m" * 40


class Outage:
    """A TCP relay in front of a real server, on its own thread: `cut()` closes every relayed
    connection and refuses new ones, as a server that went down does."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.loop = asyncio.new_event_loop()
        self.connections: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.connections |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def _cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.connections):
            writer.transport.abort()

    def cut(self) -> None:
        asyncio.run_coroutine_threadsafe(self._cut(), self.loop).result(10)

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def outages():  # noqa: ANN201
    made: list[Outage] = []

    def make(host: str, port: int) -> Outage:
        made.append(Outage(host, port))
        return made[-1]

    yield make
    for outage in made:
        outage.close()


def _database_through(outage_port: int) -> str:
    url = make_url(get_settings().database_url)
    return url.set(host="127.0.0.1", port=outage_port).render_as_string(hide_password=False)


def _access_lines(tmp_path: Path, base: str) -> list[dict]:
    port = base.rsplit(":", 1)[1]
    lines = []
    for raw in (tmp_path / f"worker-{port}.log").read_text().splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if entry.get("logger") == "api.access":
            lines.append(entry)
    return lines


async def test_database_down_answers_503_with_retry_after_counted_in_metrics_and_access_log(
    api_process, committed_sessions, outages, tmp_path: Path,  # noqa: ANN001
) -> None:
    async with committed_sessions() as session:
        technician = await make_technician(session)
        await session.commit()
    url = make_url(get_settings().database_url)
    database = outages(url.host, url.port)
    base = api_process(GASDISPATCH_DATABASE_URL=_database_through(database.port),
                      GASDISPATCH_METRICS_TOKEN=METRICS_TOKEN)
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        assert (await http.get("/v1/technicians/me", headers=technician.headers)).status_code == 200
        database.cut()
        refused = await http.get("/v1/technicians/me", headers=technician.headers)
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) > 0
        assert refused.json()["type"] == "/problems/service-unavailable"
        assert refused.json()["service"] == "database"
        # The scrape itself works without the database, so the error-rate alert can fire.
        metrics = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert metrics.status_code == 200
    assert ('gasdispatch_http_request_duration_seconds_count{method="GET",route="/v1/technicians/me",status="503"} 1.0'
            in metrics.text)
    assert any(line["route"] == "/v1/technicians/me" and line["status"] == 503 for line in _access_lines(tmp_path, base))


async def test_redis_down_answers_503_on_a_route_that_needs_redis(
    api_process, committed_sessions, outages, tmp_path: Path,  # noqa: ANN001
) -> None:
    async with committed_sessions() as session:
        technician = await make_technician(session)
        await session.commit()
    redis_url = get_settings().redis_url
    host, port = redis_url.split("//")[1].split("/")[0].split(":")
    redis = outages(host, int(port))
    base = api_process(GASDISPATCH_REDIS_URL=f"redis://127.0.0.1:{redis.port}/{redis_url.rsplit('/', 1)[1]}")
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        redis.cut()
        refused = await http.post("/v1/auth/login", json={"email": technician.account.email, "password": PASSWORD})
        assert refused.status_code == 503, refused.text
        assert refused.json()["type"] == "/problems/service-unavailable"
        assert refused.json()["service"] == "redis"
        assert "retry-after" in refused.headers
    assert any(line["route"] == "/v1/auth/login" and line["status"] == 503 for line in _access_lines(tmp_path, base))


async def test_an_unhandled_error_is_a_500_problem_counted_and_logged(app, client) -> None:  # noqa: ANN001
    from api.observability import REQUEST_LATENCY

    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/v1/test-broken", broken)
    counted = REQUEST_LATENCY.labels("GET", "/v1/test-broken", "500")._sum.get()  # noqa: SLF001
    with structlog.testing.capture_logs() as logs:
        response = await client.get("/v1/test-broken")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/internal-error"
    assert REQUEST_LATENCY.labels("GET", "/v1/test-broken", "500")._sum.get() > counted  # noqa: SLF001
    assert any(entry.get("event") == "request" and entry.get("status") == 500 for entry in logs)


def test_only_connection_failures_count_as_unavailable() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError

    from api.errors import unavailable_service

    assert unavailable_service(RedisConnectionError("Error 111 connecting")) == "redis"
    assert unavailable_service(ResponseError("WRONGTYPE")) is None
    assert unavailable_service(ValueError("bad")) is None
    assert unavailable_service(socket.gaierror(-2, "Name or service not known")) is None  # not from the driver
