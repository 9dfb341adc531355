from httpx import AsyncClient

from dispatch.security import issue_token


async def test_customer_registers_logs_in_and_sees_himself(client: AsyncClient) -> None:
    body = {"email": "wang@example.com", "password": "long enough pw", "name": "王芳", "phone": "+86 13912345678"}
    created = await client.post("/v1/auth/register/customer", json=body)
    assert created.status_code == 201
    login = await client.post("/v1/auth/login", json={"email": "WANG@example.com", "password": "long enough pw"})
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    me = await client.get("/v1/customers/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["email"] == "wang@example.com"


async def test_duplicate_registration_is_a_conflict(client: AsyncClient) -> None:
    body = {"email": "dup@example.com", "password": "long enough pw", "name": "A", "phone": "+86 13912345678"}
    assert (await client.post("/v1/auth/register/customer", json=body)).status_code == 201
    again = await client.post("/v1/auth/register/technician", json=body)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"


async def test_wrong_password_is_401_and_repeated_failures_are_throttled(client: AsyncClient) -> None:
    body = {"email": "slow@example.com", "password": "long enough pw", "name": "A", "phone": "+86 13912345678"}
    await client.post("/v1/auth/register/customer", json=body)
    for _ in range(5):
        wrong = await client.post("/v1/auth/login", json={"email": "slow@example.com", "password": "nope nope"})
        assert wrong.status_code == 401
        assert wrong.json()["type"] == "/problems/authentication-failed"
    blocked = await client.post("/v1/auth/login", json={"email": "slow@example.com", "password": "long enough pw"})
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0


async def test_login_gives_a_refresh_token_that_renews_the_session(client: AsyncClient) -> None:
    body = {"email": "renew@example.com", "password": "long enough pw", "name": "A", "phone": "+86 13912345678"}
    await client.post("/v1/auth/register/customer", json=body)
    login = (await client.post("/v1/auth/login", json={"email": body["email"], "password": body["password"]})).json()
    renewed = await client.post("/v1/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["refresh_token"] != login["refresh_token"]
    me = await client.get("/v1/customers/me", headers={"Authorization": f"Bearer {renewed.json()['access_token']}"})
    assert me.status_code == 200


async def test_missing_garbage_and_expired_tokens_are_401(client: AsyncClient) -> None:
    assert (await client.get("/v1/orders")).status_code == 401
    assert (await client.get("/v1/orders", headers={"Authorization": "Bearer not.a.jwt"})).status_code == 401
    import uuid

    expired, _ = issue_token(uuid.uuid4(), "customer", ttl_s=-10)
    response = await client.get("/v1/orders", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


def test_production_refuses_the_default_secret(monkeypatch) -> None:  # noqa: ANN001
    import pytest
    from pydantic import ValidationError

    from kit.config import Settings

    monkeypatch.delenv("GASDISPATCH_JWT_SECRET", raising=False)
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(environment="production")
    with pytest.raises(ValidationError, match="QR_SIGNING_KEYS"):
        Settings(environment="production", jwt_secret="x" * 40)
    strong = Settings(environment="production", jwt_secret="x" * 40, qr_signing_keys={"2026-11": "q" * 40},
                      stripe_webhook_secret="w" * 40, vapid_private_key="v" * 43)
    assert strong.environment == "production"
