"""Fixtures of the meters tests: the concentrator server over real sockets on 127.0.0.1.

The server gets a session factory that shares the test's transaction (each batch in a
savepoint, under a lock because one connection serves one statement at a time), so nothing
is committed and nothing needs cleaning up.
"""

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from zoneinfo import ZoneInfo

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from meters.listener import ConcentratorServer

TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def shared(session: AsyncSession):  # noqa: ANN201
    lock = asyncio.Lock()

    @asynccontextmanager
    async def factory() -> AsyncIterator[AsyncSession]:
        async with lock:
            nested = await session.begin_nested()
            try:
                yield session
                await nested.commit()
            except BaseException:
                await nested.rollback()
                raise

    return factory


@pytest.fixture
async def plain_server(shared, redis):  # noqa: ANN001, ANN201
    server = ConcentratorServer(session_factory=shared, redis=redis, tz=TZ, plain_allowed=frozenset({"127.0.0.1"}))
    tcp = await server.start("127.0.0.1", 0, ssl_context=None)
    yield server, tcp.sockets[0].getsockname()[1]
    tcp.close()
    await tcp.wait_closed()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)
