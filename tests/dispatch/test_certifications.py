from datetime import datetime, timedelta, timezone

from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.technicians import certifications_of, usable_kinds
from tests.factories import make_staff, make_technician


async def test_expired_or_unverified_certifications_do_not_qualify(session: AsyncSession) -> None:
    now = datetime.now(timezone.utc)
    verified = await make_technician(session, kinds=("repair",))
    pending = await make_technician(session, kinds=("repair",), status="pending")
    revoked = await make_technician(session, kinds=("repair",), status="revoked")
    expired = await make_technician(session, kinds=("repair",), valid_until=now - timedelta(seconds=1))
    assert usable_kinds(await certifications_of(session, verified.technician.id)) == {"repair"}
    for ctx in (pending, revoked, expired):
        assert usable_kinds(await certifications_of(session, ctx.technician.id)) == set()
    # Not yet valid either.
    later = now - timedelta(days=400)
    assert usable_kinds(await certifications_of(session, verified.technician.id), now=later) == set()


async def test_onboarding_training_exam_then_admin_verifies(client: AsyncClient, session: AsyncSession) -> None:
    register = await client.post("/v1/auth/register/technician", json={
        "email": "applicant@example.com", "password": "long enough pw", "name": "赵强", "phone": "+86 13700000000"})
    technician_id = register.json()["id"]
    _, admin = await make_staff(session, "admin")
    held = datetime.now(timezone.utc).isoformat()
    exam_first = await client.post(f"/v1/technicians/{technician_id}/training-records", headers=admin, json={
        "record_type": "exam", "kind": "repair", "held_at": held, "score": 90, "passed": True, "certificate_number": "WX-1"})
    assert exam_first.status_code == 409  # no training recorded yet
    training = await client.post(f"/v1/technicians/{technician_id}/training-records", headers=admin, json={
        "record_type": "training", "kind": "repair", "held_at": held})
    assert training.status_code == 201
    exam = await client.post(f"/v1/technicians/{technician_id}/training-records", headers=admin, json={
        "record_type": "exam", "kind": "repair", "held_at": held, "score": 90, "passed": True, "certificate_number": "WX-1"})
    assert exam.status_code == 201, exam.text
    cert_id = exam.json()["certification_id"]
    profile = (await client.get(f"/v1/technicians/{technician_id}", headers=admin)).json()
    assert profile["onboarding"] == "applicant"
    assert profile["certifications"][0]["status"] == "pending"
    assert profile["certifications"][0]["usable"] is False
    pending = (await client.get("/v1/certifications", headers=admin, params={"status": "pending"})).json()["data"]
    assert cert_id in [c["id"] for c in pending]
    verified = await client.post(f"/v1/certifications/{cert_id}/verify", headers=admin, json={})
    assert verified.json()["status"] == "verified" and verified.json()["usable"] is True
    assert (await client.get(f"/v1/technicians/{technician_id}", headers=admin)).json()["onboarding"] == "active"
    no_reason = await client.post(f"/v1/certifications/{cert_id}/revoke", headers=admin, json={})
    assert no_reason.status_code == 409
    revoked = await client.post(f"/v1/certifications/{cert_id}/revoke", headers=admin, json={"reason": "exam fraud"})
    assert revoked.json()["usable"] is False


async def test_technician_submits_certificate_and_renewal_is_flagged(client: AsyncClient, session: AsyncSession) -> None:
    tech = await make_technician(session, kinds=())
    now = datetime.now(timezone.utc)
    bad = await client.post("/v1/technicians/me/certifications", headers=tech.headers, json={
        "kind": "repair", "number": "X-1", "issuer": "city", "valid_from": now.isoformat(),
        "valid_until": (now - timedelta(days=1)).isoformat()})
    assert bad.status_code == 422
    submitted = await client.post("/v1/technicians/me/certifications", headers=tech.headers, json={
        "kind": "repair", "number": "X-1", "issuer": "city", "valid_from": (now - timedelta(days=300)).isoformat(),
        "valid_until": (now + timedelta(days=10)).isoformat()})
    assert submitted.status_code == 201 and submitted.json()["status"] == "pending"
    duplicate = await client.post("/v1/technicians/me/certifications", headers=tech.headers, json={
        "kind": "repair", "number": "X-1", "issuer": "city", "valid_from": now.isoformat(),
        "valid_until": (now + timedelta(days=10)).isoformat()})
    assert duplicate.status_code == 409
    _, admin = await make_staff(session, "admin")
    await client.post(f"/v1/certifications/{submitted.json()['id']}/verify", headers=admin, json={})
    mine = (await client.get("/v1/technicians/me/certifications", headers=tech.headers)).json()["data"]
    assert mine[0]["renewal_due"] is True
