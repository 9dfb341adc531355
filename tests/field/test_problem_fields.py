"""Problems carry the numbers their message needs as fields, so the apps word them in the user's
language: tries left at the door, how far from the address, how long to wait."""

from datetime import datetime, timezone

from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from tests.field.support import accepted_job


async def test_a_wrong_door_code_says_how_many_tries_are_left(client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
                                                             monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(get_settings(), "field_code_max_failures", 3)
    job = await accepted_job(session, redis, datetime.now(timezone.utc))
    card = (await client.get(f"/v1/orders/{job.order.id}/technician", headers=job.customer.headers)).json()
    wrong = f"{(int(card['code']) + 1) % 10**6:06d}"
    answers = [(await client.post(f"/v1/jobs/{job.order.id}/verify-code", headers=job.technician.headers,
                                  json={"code": wrong})).json() for _ in range(3)]
    assert [(a["type"], a.get("tries_left")) for a in answers] == [
        ("/problems/wrong-code", 2), ("/problems/wrong-code", 1), ("/problems/identity-locked", None)]


async def test_a_check_in_too_far_away_says_the_distance_and_the_radius(client: AsyncClient, session: AsyncSession,
                                                                        redis, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(get_settings(), "field_arrival_radius_m", 60)
    now = datetime.now(timezone.utc)
    job = await accepted_job(session, redis, now, start_m=585)
    tech = job.technician.headers
    await client.post(f"/v1/jobs/{job.order.id}/depart", headers=tech)
    card = (await client.get(f"/v1/orders/{job.order.id}/technician", headers=job.customer.headers)).json()
    await client.post(f"/v1/jobs/{job.order.id}/verify-code", headers=tech, json={"code": card["code"]})

    far = (await client.post(f"/v1/jobs/{job.order.id}/arrive", headers=tech)).json()
    assert far["type"] == "/problems/too-far-from-address"
    assert abs(far["distance_m"] - 585) <= 5 and far["radius_m"] == 60


async def test_a_refused_login_says_how_long_to_wait_in_the_body_and_the_header(client: AsyncClient,
                                                                                monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(get_settings(), "login_max_failures", 2)
    body = {"email": "wait@example.com", "password": "long enough pw", "name": "A", "phone": "+86 13912345678"}
    await client.post("/v1/auth/register/customer", json=body)
    wrong = [await client.post("/v1/auth/login", json={"email": body["email"], "password": "nope nope"}) for _ in range(2)]
    assert [w.json()["type"] for w in wrong] == ["/problems/authentication-failed"] * 2
    refused = await client.post("/v1/auth/login", json={"email": body["email"], "password": body["password"]})
    assert refused.status_code == 429 and refused.json()["type"] == "/problems/too-many-attempts"
    assert refused.json()["retry_after_s"] == int(refused.headers["Retry-After"]) > 0
