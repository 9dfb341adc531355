"""The auditor reads everything, changes nothing, and every read is logged."""

import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.asgi import create_app
from settlement import service
from settlement.models import AuditAccess
from tests.factories import make_staff
from tests.settlement.support import accept, complete, finalize_review, new_order

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
OWN_SESSION_ROUTES = {("POST", "/v1/auth/logout")}  # every account may end its own session


def _bearer_write_routes() -> list[tuple[str, str]]:
    spec = create_app().openapi()
    return sorted((method.upper(), path) for path, ops in spec["paths"].items() for method, op in ops.items()
                  if method.upper() in WRITE_METHODS and op.get("security")
                  and (method.upper(), path) not in OWN_SESSION_ROUTES)


pytestmark = pytest.mark.usefixtures("settlement_handlers")


def test_the_write_routes_include_settlements_own() -> None:
    routes = _bearer_write_routes()
    assert ("POST", "/v1/orders/{order_id}/refunds") in routes
    assert ("POST", "/v1/settlement-rules") in routes


async def test_auditor_is_refused_on_every_write_route(client: AsyncClient, session: AsyncSession) -> None:
    _, auditor = await make_staff(session, "auditor")
    for method, path in _bearer_write_routes():
        concrete = re.sub(r"\{code\}", "repair", re.sub(r"\{[a-z_]+\}", str(uuid.uuid4()), path))
        response = await client.request(method, concrete, headers=auditor, json={})
        assert response.status_code == 403, (method, path, response.status_code, response.text)


async def _settled(client: AsyncClient, session: AsyncSession) -> uuid.UUID:
    order, _, technician = await new_order(client, session)
    await accept(session, order, technician)
    await complete(session, order)
    await finalize_review(session, order, stars=3)
    for settlement_id in await service.pending_transfer_ids(session):
        await service.transfer_settlement(session, settlement_id, service.get_gateway())
    return order.id


async def test_evidence_bundle_lets_an_auditor_recompute_the_payout(client: AsyncClient, session: AsyncSession) -> None:
    order_id = await _settled(client, session)
    account, auditor = await make_staff(session, "auditor")
    listed = (await client.get("/v1/settlements", headers=auditor, params={"adjusted": "true", "status": "transferred"})).json()
    settlement = next(s for s in listed["data"] if s["order_id"] == str(order_id))
    bundle = (await client.get(f"/v1/settlements/{settlement['id']}/evidence", headers=auditor)).json()
    arithmetic, rules = bundle["arithmetic"], bundle["rules"]
    base = arithmetic["base_minor"]
    adjustment = base * rules["adjustment_bps_by_stars"]["3"] // 10_000
    fee = base * rules["platform_fee_bps"] // 10_000 + rules["platform_fee_fixed_minor"]
    assert base + adjustment - fee == bundle["settlement"]["payout_minor"] == 8000 - 800 - 1200
    assert [e["action"] for e in bundle["timeline"]][-1] == "settle"
    assert [e["kind"] for e in bundle["ledger"]] == ["hold", "capture", "settlement", "transfer"]
    assert bundle["provider_ids"]["transfer"] == settlement["transfer_id"]
    logged = (await session.exec(select(AuditAccess.action).where(AuditAccess.account_id == account.id)
                                 .order_by(AuditAccess.id))).all()
    assert logged == ["list_settlements", "evidence"]


async def test_exports_stream_the_periods_ledger_and_settlements_as_csv(client: AsyncClient, session: AsyncSession) -> None:
    order_id = await _settled(client, session)
    _, auditor = await make_staff(session, "auditor")
    now = datetime.now(timezone.utc)
    period = {"from": (now - timedelta(minutes=5)).isoformat(), "to": (now + timedelta(minutes=5)).isoformat()}
    ledger_csv = await client.get("/v1/audit/ledger.csv", headers=auditor, params=period)
    assert ledger_csv.status_code == 200 and ledger_csv.headers["content-type"].startswith("text/csv")
    lines = [line for line in ledger_csv.text.splitlines() if str(order_id) in line]
    # postings: hold 2, full capture 2, settlement 4 (liability, pool, fee, payable), transfer 2
    assert len(lines) == 2 + 2 + 4 + 2
    settlements_csv = await client.get("/v1/audit/settlements.csv", headers=auditor, params=period)
    assert str(order_id) in settlements_csv.text


async def test_export_with_a_reversed_period_is_a_problem_not_a_crash(client: AsyncClient, session: AsyncSession) -> None:
    _, auditor = await make_staff(session, "auditor")
    response = await client.get("/v1/audit/ledger.csv", headers=auditor,
                                params={"from": "2026-12-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
