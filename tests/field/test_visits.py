"""Identity at the door and proof of visit, through the HTTP API with controlled positions."""

from datetime import datetime, timedelta, timezone

import pytest
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from dispatch.field import identity
from dispatch.field.models import Visit
from dispatch.models import Order
from kit.models import OutboxMessage
from tests.field.support import accepted_job, make_station, place


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


async def test_arrival_is_refused_2_km_away_and_accepted_50_m_away(client: AsyncClient, session: AsyncSession, redis, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(get_settings(), "stale_after_s", 300)
    # The 2 km fix is two minutes old, so walking up to the door is not an implausible jump.
    job = await accepted_job(session, redis, now_utc() - timedelta(minutes=2))
    tech, cust = job.technician.headers, job.customer.headers
    assert (await client.post(f"/v1/jobs/{job.order.id}/depart", headers=tech)).json()["status"] == "en_route"
    qr = (await client.get(f"/v1/jobs/{job.order.id}/qr", headers=tech)).json()
    verified = await client.post(f"/v1/orders/{job.order.id}/verify-technician", headers=cust, json={"token": qr["token"]})
    assert verified.status_code == 200, verified.text

    far = await client.post(f"/v1/jobs/{job.order.id}/arrive", headers=tech)
    assert far.status_code == 422
    assert far.json()["type"] == "/problems/too-far-from-address"
    assert (await session.get(Order, job.order.id, populate_existing=True)).status == "en_route"

    await place(session, redis, job, 50, now_utc())
    near = await client.post(f"/v1/jobs/{job.order.id}/arrive", headers=tech)
    assert near.status_code == 200, near.text
    assert near.json()["status"] == "arrived"
    visit = (await client.get(f"/v1/orders/{job.order.id}/visit", headers=cust)).json()
    assert visit["verification"] == "qr" and visit["checked_in_at"] is not None
    assert [(v["method"], v["succeeded"]) for v in visit["verifications"]] == [("qr", True)]


async def test_arrival_with_a_stale_position_is_refused(session: AsyncSession, redis) -> None:  # noqa: ANN001
    from dispatch.field import visits

    t0 = now_utc()
    job = await accepted_job(session, redis, t0, start_m=40)
    await visits.depart(session, redis, job.order.id, job.technician.technician.id, t0)
    await identity.waive(session, job.order, identity.Actor("customer", "c"), "I know him", t0)
    later = t0 + timedelta(seconds=get_settings().stale_after_s + 1)
    with pytest.raises(visits.NoFreshPosition):
        await visits.arrive(session, redis, job.order.id, job.technician.technician.id, later)
    assert (await visits.arrive(session, redis, job.order.id, job.technician.technician.id, t0)).status == "arrived"


async def test_arrival_needs_identity_verified_or_explicitly_waived(client: AsyncClient, session: AsyncSession, redis) -> None:  # noqa: ANN001
    job = await accepted_job(session, redis, now_utc(), start_m=30)
    tech, cust = job.technician.headers, job.customer.headers
    await client.post(f"/v1/jobs/{job.order.id}/depart", headers=tech)
    refused = await client.post(f"/v1/jobs/{job.order.id}/arrive", headers=tech)
    assert refused.status_code == 409 and refused.json()["type"] == "/problems/identity-not-verified"
    waived = await client.post(f"/v1/orders/{job.order.id}/waive-verification", headers=cust, json={"reason": "neighbour"})
    assert waived.status_code == 200
    assert (await client.post(f"/v1/jobs/{job.order.id}/arrive", headers=tech)).status_code == 200
    assert (await session.get(Visit, job.order.id)).verification == "waived"


async def test_forged_or_expired_qr_payload_is_rejected(client: AsyncClient, session: AsyncSession, redis) -> None:  # noqa: ANN001
    job = await accepted_job(session, redis, now_utc())
    cust = job.customer.headers
    good, _ = identity.sign_qr(job.order.id, job.technician.technician.id, now_utc())
    body, signature = good.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    expired, _ = identity.sign_qr(job.order.id, job.technician.technician.id, now_utc() - timedelta(hours=1))
    other_order, _ = identity.sign_qr(job.customer.address.id, job.technician.technician.id, now_utc())
    for token in (f"{body}.{flipped}", expired, other_order, "not-a-token-at-all", f"{body}.{body}"):
        response = await client.post(f"/v1/orders/{job.order.id}/verify-technician", headers=cust, json={"token": token})
        assert response.status_code == 422, (token, response.text)
        assert response.json()["type"] == "/problems/invalid-qr-token"
        assert (await client.get(f"/v1/verify/{token}")).status_code == 422
    visit = (await client.get(f"/v1/orders/{job.order.id}/visit", headers=cust)).json()
    assert (visit["verification"], visit["verifications"]) == (None, [])


async def test_qr_signed_before_a_key_rotation_still_verifies(session: AsyncSession, monkeypatch) -> None:  # noqa: ANN001
    settings = get_settings()
    now = now_utc()
    monkeypatch.setattr(settings, "qr_signing_keys", {"k1": "first-secret"})
    monkeypatch.setattr(settings, "qr_active_key_id", "k1")
    old, _ = identity.sign_qr(identity.uuid.uuid4(), identity.uuid.uuid4(), now)
    monkeypatch.setattr(settings, "qr_signing_keys", {"k1": "first-secret", "k2": "second-secret"})
    monkeypatch.setattr(settings, "qr_active_key_id", "k2")
    new, _ = identity.sign_qr(identity.uuid.uuid4(), identity.uuid.uuid4(), now)
    assert identity.read_qr(old, now) and identity.read_qr(new, now)
    monkeypatch.setattr(settings, "qr_signing_keys", {"k2": "second-secret"})
    with pytest.raises(identity.InvalidQrToken):
        identity.read_qr(old, now)  # the retired key no longer verifies


async def test_one_time_code_locks_after_the_configured_tries_and_alerts_ops(client: AsyncClient, session: AsyncSession, redis, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(get_settings(), "field_code_max_failures", 3)
    job = await accepted_job(session, redis, now_utc())
    tech = job.technician.headers
    card = (await client.get(f"/v1/orders/{job.order.id}/technician", headers=job.customer.headers)).json()
    wrong = f"{(int(card['code']) + 1) % 10**6:06d}"
    answers = [await client.post(f"/v1/jobs/{job.order.id}/verify-code", headers=tech, json={"code": wrong})
               for _ in range(3)]
    assert [a.status_code for a in answers] == [422, 422, 429]
    assert answers[-1].json()["type"] == "/problems/identity-locked"
    right = await client.post(f"/v1/jobs/{job.order.id}/verify-code", headers=tech, json={"code": card["code"]})
    assert right.status_code == 429  # locked: even the right code is refused now
    visit = await session.get(Visit, job.order.id, populate_existing=True)
    assert (visit.code_failures, visit.verification) == (3, None) and visit.code_locked_at is not None
    alerts = (await session.exec(select(OutboxMessage).where(OutboxMessage.topic == "field.identity_locked"))).all()
    assert [a.payload for a in alerts] == [{"order_id": str(job.order.id), "technician_id": str(job.technician.technician.id)}]
    recorded = (await client.get(f"/v1/orders/{job.order.id}/visit", headers=job.customer.headers)).json()
    assert [v["succeeded"] for v in recorded["verifications"]] == [False, False, False]


async def test_the_right_code_verifies_the_technician(client: AsyncClient, session: AsyncSession, redis) -> None:  # noqa: ANN001
    job = await accepted_job(session, redis, now_utc())
    card = (await client.get(f"/v1/orders/{job.order.id}/technician", headers=job.customer.headers)).json()
    ok = await client.post(f"/v1/jobs/{job.order.id}/verify-code", headers=job.technician.headers, json={"code": card["code"]})
    assert ok.status_code == 200, ok.text
    assert (await session.get(Visit, job.order.id, populate_existing=True)).verification == "code"
    bad = await client.post(f"/v1/jobs/{job.order.id}/verify-code", headers=job.technician.headers, json={"code": "12ab"})
    assert bad.status_code == 422 and bad.json()["type"] == "/problems/validation-error"


async def test_identity_card_is_shown_only_from_acceptance_until_completion(client: AsyncClient, session: AsyncSession, redis) -> None:  # noqa: ANN001
    from tests.factories import make_customer

    station = await make_station(session)
    job = await accepted_job(session, redis, now_utc(), station=station)
    card = await client.get(f"/v1/orders/{job.order.id}/technician", headers=job.customer.headers)
    assert card.status_code == 200
    body = card.json()
    cert = await identity.usable_certification(session, job.technician.technician.id, "repair", now_utc())
    assert body["name"] == "韩梅梅" and body["station"] == station.name
    assert (body["certification_kind"], body["certification_number"]) == ("repair", cert.number)
    assert len(body["code"]) == 6 and body["code_expires_at"]
    other = await make_customer(session)
    assert (await client.get(f"/v1/orders/{job.order.id}/technician", headers=other.headers)).status_code == 404
    new = await client.post("/v1/orders", headers=other.headers, json={"kind": "repair", "address_id": str(other.address.id)})
    early = await client.get(f"/v1/orders/{new.json()['id']}/technician", headers=other.headers)
    assert early.status_code == 409 and early.json()["type"] == "/problems/no-visit-in-progress"


async def test_public_verify_shows_only_name_station_and_certificate_validity(client: AsyncClient, session: AsyncSession, redis) -> None:  # noqa: ANN001
    station = await make_station(session)
    job = await accepted_job(session, redis, now_utc(), station=station)
    qr = (await client.get(f"/v1/jobs/{job.order.id}/qr", headers=job.technician.headers)).json()
    response = await client.get(f"/v1/verify/{qr['token']}")  # no bearer token
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"technician_name", "station", "certification_kind", "certificate_valid", "certificate_valid_until"}
    assert (body["technician_name"], body["station"], body["certification_kind"], body["certificate_valid"]) == (
        "韩梅梅", station.name, "repair", True)
    text = response.text
    for secret in ("+86", "幸福里", str(job.customer.address.id), "120.1", "30.27", "phone", "address", "position"):
        assert secret not in text
