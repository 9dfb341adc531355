"""Issue #13 items 8, 11 and 13 (passwords, registration): login back-off that cannot lock the
owner out, tokens re-checked against the account, logout, disabling, short access tokens with
rotated refresh tokens, and the password policy."""

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from ipaddress import ip_network

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from tests.factories import PASSWORD, make_account, make_customer, make_staff

ATTACKER = "203.0.113.66"
OWNER = "198.51.100.7"
PROXY = "10.0.0.5"


@pytest.fixture
def client_at(app: FastAPI) -> Callable[[str], AsyncIterator[AsyncClient]]:
    """A client whose requests come from the given address (what the server sees as the peer)."""
    @asynccontextmanager
    async def at(address: str) -> AsyncIterator[AsyncClient]:
        transport = ASGITransport(app=app, raise_app_exceptions=False, client=(address, 40000))
        async with AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http

    return at


def credentials(email: str, password: str = PASSWORD) -> dict[str, str]:
    return {"email": email, "password": password}


async def fail_five_times(http: AsyncClient, email: str, **headers: str) -> None:
    for _ in range(5):
        assert (await http.post("/v1/auth/login", json=credentials(email, "wrong password 1"), headers=headers)).status_code == 401


# -- item 8: login back-off -----------------------------------------------------------------------

async def test_failures_from_an_attacker_never_lock_the_owner_out(session: AsyncSession, client_at) -> None:  # noqa: ANN001
    admin = await make_account(session, "admin")
    async with client_at(ATTACKER) as attacker, client_at(OWNER) as owner:
        await fail_five_times(attacker, admin.email)
        refused = await attacker.post("/v1/auth/login", json=credentials(admin.email))
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
        assert (await owner.post("/v1/auth/login", json=credentials(admin.email))).status_code == 200


async def test_failures_on_other_accounts_do_not_lock_out_an_address_shared_by_many(session: AsyncSession, client_at) -> None:  # noqa: ANN001
    colleague = await make_account(session, "customer")
    async with client_at(OWNER) as office:
        for i in range(6):
            await office.post("/v1/auth/login", json=credentials(f"nobody{i}@example.com", "wrong password 1"))
        assert (await office.post("/v1/auth/login", json=credentials(colleague.email))).status_code == 200


async def test_x_forwarded_for_is_believed_only_from_a_configured_proxy(
    session: AsyncSession, client_at, monkeypatch,  # noqa: ANN001
) -> None:
    account = await make_account(session, "customer")
    async with client_at(ATTACKER) as attacker:
        # Not a proxy: a forged header cannot give each guess a fresh address.
        for i in range(5):
            await attacker.post("/v1/auth/login", json=credentials(account.email, "wrong password 1"),
                                headers={"X-Forwarded-For": f"192.0.2.{i}"})
        forged = await attacker.post("/v1/auth/login", json=credentials(account.email, "wrong password 1"),
                                     headers={"X-Forwarded-For": "192.0.2.99"})
        assert forged.status_code == 429
    monkeypatch.setattr(get_settings(), "trusted_proxies", [ip_network("10.0.0.0/8")])
    other = await make_account(session, "customer")
    async with client_at(PROXY) as proxy:
        # Behind our proxy, the attacker's failures are his own, not the proxy's; the client's own
        # spoofed entries (left of what the proxy appended) count for nothing.
        await fail_five_times(proxy, other.email, **{"X-Forwarded-For": f"1.2.3.4, {ATTACKER}"})
        assert (await proxy.post("/v1/auth/login", json=credentials(other.email),
                                 headers={"X-Forwarded-For": f"{ATTACKER}, {OWNER}"})).status_code == 200
        assert (await proxy.post("/v1/auth/login", json=credentials(other.email),
                                 headers={"X-Forwarded-For": f"{OWNER}, {ATTACKER}"})).status_code == 429


# -- item 13: passwords and registration -----------------------------------------------------------

@pytest.mark.parametrize(("password", "why"), [
    ("short pw 1", None),  # 10 characters: long enough, and not common
    ("abc12345", "too short"),
    ("password123", "common"),
    ("qwertyuiop", "common"),
    ("ling@example.com", "the email"),
])
async def test_registration_enforces_the_password_policy(client: AsyncClient, password: str, why: str | None) -> None:
    body = {"email": "ling@example.com", "password": password, "name": "林", "phone": "+86 13912345678"}
    response = await client.post("/v1/auth/register/customer", json=body)
    if why is None:
        assert response.status_code == 201, response.text
    else:
        assert response.status_code == 422, (why, response.text)
        assert response.headers["content-type"] == "application/problem+json"


def test_the_demo_password_passes_the_policy() -> None:
    from dispatch.accounts import check_password_policy
    from dispatch.seed import DEMO_PASSWORD

    check_password_policy(DEMO_PASSWORD, email="admin@demo.gasdispatch.local", name="运营管理员")


async def test_registrations_from_one_address_are_rate_limited(client: AsyncClient, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(get_settings(), "register_max_per_hour", 3)
    for n in range(3):
        body = {"email": f"probe{n}@example.com", "password": "long enough pw", "name": "A", "phone": "+86 13912345678"}
        assert (await client.post("/v1/auth/register/customer", json=body)).status_code == 201
    # The fourth try, taken email or not, learns nothing but Retry-After.
    probe = {"email": "probe0@example.com", "password": "long enough pw", "name": "A", "phone": "+86 13912345678"}
    refused = await client.post("/v1/auth/register/technician", json=probe)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0


# -- item 11: tokens ---------------------------------------------------------------------------------

async def login(client: AsyncClient, email: str) -> dict:
    response = await client.post("/v1/auth/login", json=credentials(email))
    assert response.status_code == 200, response.text
    return response.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_staff_token_stops_working_once_the_account_is_gone_or_demoted(client: AsyncClient, session: AsyncSession) -> None:
    account, headers = await make_staff(session, "admin")
    assert (await client.get("/v1/operations/technicians", headers=headers)).status_code == 200
    account.role = "customer"
    session.add(account)
    await session.flush()
    assert (await client.get("/v1/operations/technicians", headers=headers)).status_code == 401
    await session.delete(account)
    await session.flush()
    assert (await client.get("/v1/operations/technicians", headers=headers)).status_code == 401


async def test_access_tokens_are_short_lived(client: AsyncClient, session: AsyncSession) -> None:
    customer = await make_customer(session)
    tokens = await login(client, customer.account.email)
    assert 0 < tokens["expires_in"] <= 15 * 60
    assert tokens["refresh_token"]


async def test_logout_revokes_every_access_and_refresh_token(client: AsyncClient, session: AsyncSession) -> None:
    customer = await make_customer(session)
    phone, laptop = await login(client, customer.account.email), await login(client, customer.account.email)
    assert (await client.post("/v1/auth/logout", headers=bearer(laptop["access_token"]))).status_code == 204
    assert (await client.get("/v1/customers/me", headers=bearer(phone["access_token"]))).status_code == 401
    assert (await client.post("/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]})).status_code == 401
    assert (await client.get("/v1/customers/me", headers=bearer((await login(client, customer.account.email))["access_token"]))).status_code == 200


async def test_an_admin_disables_an_account_and_its_tokens_and_logins_stop(client: AsyncClient, session: AsyncSession) -> None:
    customer = await make_customer(session)
    admin, admin_headers = await make_staff(session, "admin")
    tokens = await login(client, customer.account.email)
    assert (await client.post(f"/v1/accounts/{customer.account.id}/disable", headers=customer.headers)).status_code == 403
    assert (await client.post(f"/v1/accounts/{customer.account.id}/disable", headers=admin_headers)).status_code == 200
    assert (await client.get("/v1/customers/me", headers=customer.headers)).status_code == 401
    assert (await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).status_code == 401
    refused = await client.post("/v1/auth/login", json=credentials(customer.account.email))
    assert refused.status_code == 403 and refused.json()["type"] == "/problems/account-disabled"
    assert (await client.post(f"/v1/accounts/{admin.id}/disable", headers=admin_headers)).status_code == 409
    assert (await client.post(f"/v1/accounts/{uuid.uuid4()}/disable", headers=admin_headers)).status_code == 404
    assert (await client.post(f"/v1/accounts/{customer.account.id}/enable", headers=admin_headers)).status_code == 200
    assert (await client.post("/v1/auth/login", json=credentials(customer.account.email))).status_code == 200


async def test_a_reused_refresh_token_revokes_its_whole_family(client: AsyncClient, session: AsyncSession) -> None:
    customer = await make_customer(session)
    first = await login(client, customer.account.email)
    other_device = await login(client, customer.account.email)
    second = (await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
    # A thief replays the spent token: refused, and the rotated one the owner holds dies with it.
    replay = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401 and replay.json()["type"] == "/problems/refresh-token-reused"
    assert (await client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})).status_code == 401
    # Another family (another device) lives on.
    assert (await client.post("/v1/auth/refresh", json={"refresh_token": other_device["refresh_token"]})).status_code == 200
