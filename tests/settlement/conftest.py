import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from settlement.stripe_gateway import StripeGateway

SERVER_SCRIPT = Path(__file__).resolve().parents[1] / "support" / "stripe_server.py"
LOCAL_API_KEY = "sk_test_gasdispatch_contract"
WEBHOOK_SECRET = "whsec_gasdispatch_contract"
WEBHOOK_TOLERANCE_S = 300
STRIPE_API_BASE = "https://api.stripe.com"


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_serving(base: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"stripe test server exited:\n{log.read_text()}")
        try:
            httpx.get(f"{base}/v1/balance", auth=(LOCAL_API_KEY, ""), timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    pytest.fail(f"stripe test server did not answer on {base}:\n{log.read_text()}")


@pytest.fixture(scope="session")
def stripe_api_base(tmp_path_factory) -> Iterator[str]:
    configured = os.environ.get("GASDISPATCH_STRIPE_API_BASE")
    if configured:
        yield configured.rstrip("/")
        return
    port = _free_loopback_port()
    log = tmp_path_factory.mktemp("stripe_server") / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(base, server, log)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="session")
def webhook_secret() -> str:
    return WEBHOOK_SECRET


@pytest.fixture(scope="session")
def webhook_tolerance_s() -> int:
    return WEBHOOK_TOLERANCE_S


@pytest.fixture(scope="session", params=["localstripe", "stripe-test-mode"])
def backend(request) -> str:
    if request.param == "stripe-test-mode":
        key = os.environ.get("STRIPE_TEST_SECRET_KEY", "")
        if not key:
            pytest.skip("STRIPE_TEST_SECRET_KEY not set: contract tests against Stripe test mode skipped")
        if not key.startswith(("sk_test_", "rk_test_")):
            pytest.fail("STRIPE_TEST_SECRET_KEY must be a test-mode key")
    return request.param


@pytest.fixture(scope="session")
def gateway(backend, request) -> StripeGateway:
    if backend == "stripe-test-mode":
        return StripeGateway(
            os.environ["STRIPE_TEST_SECRET_KEY"], STRIPE_API_BASE, WEBHOOK_SECRET, WEBHOOK_TOLERANCE_S
        )
    return StripeGateway(
        LOCAL_API_KEY,
        request.getfixturevalue("stripe_api_base"),
        WEBHOOK_SECRET,
        WEBHOOK_TOLERANCE_S,
    )


@pytest.fixture
def local_api(backend, request) -> Iterator[httpx.Client]:
    """Raw access to the test server, for what the gateway cannot set up on its own."""
    if backend != "localstripe":
        pytest.skip("needs the local Stripe test server")
    base = request.getfixturevalue("stripe_api_base")
    with httpx.Client(base_url=base, auth=(LOCAL_API_KEY, "")) as client:
        yield client


@pytest.fixture
def settlement_handlers() -> Iterator[None]:
    """Settlement subscribed to its events for one test, as the app lifespan does."""
    from kit.events import unsubscribe
    from settlement import handlers

    handlers.register()
    yield
    unsubscribe("dispatch.order_status_changed", handlers.on_order_status_changed)
    unsubscribe("field.price_change_approved", handlers.on_price_change_approved)
    unsubscribe("ratings.review_finalized", handlers.on_review_finalized)


@pytest.fixture
def committed_db():
    """A scratch database migrated to every head, dropped afterwards; its data is committed."""
    import asyncio
    import uuid

    from alembic import command
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.cli import alembic_config
    from tests.settlement.support import CommittedDatabase

    base = make_url(os.environ["GASDISPATCH_DATABASE_URL"])
    name = f"gasdispatch_settlement_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        engine = create_async_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(sql))
        await engine.dispose()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    config = alembic_config()
    config.attributes["database_url"] = url
    command.upgrade(config, "heads")
    yield CommittedDatabase(url)
    asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))
