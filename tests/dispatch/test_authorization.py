"""Every role against every route. The route list comes from the app's OpenAPI document, so a
new route without an entry in ALLOWED fails this test until its access rule is declared."""

import re
import uuid

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from app.asgi import create_app
from tests.factories import make_customer, make_staff, make_technician

ROLES = ("anonymous", "customer", "technician", "auditor", "admin")
EVERYONE = set(ROLES)
SIGNED_IN = EVERYONE - {"anonymous"}

# (method, path template) -> roles that may reach it.
ALLOWED: dict[tuple[str, str], set[str]] = {
    ("GET", "/v1/health/live"): EVERYONE,
    ("GET", "/v1/health"): EVERYONE,
    ("POST", "/v1/auth/register/customer"): EVERYONE,
    ("POST", "/v1/auth/register/technician"): EVERYONE,
    ("POST", "/v1/auth/login"): EVERYONE,
    ("POST", "/v1/auth/refresh"): EVERYONE,  # the refresh token in the body is the credential
    ("POST", "/v1/auth/logout"): SIGNED_IN,
    ("POST", "/v1/accounts/{account_id}/disable"): {"admin"},
    ("POST", "/v1/accounts/{account_id}/enable"): {"admin"},
    ("GET", "/v1/service-kinds"): EVERYONE,
    ("POST", "/v1/service-kinds"): {"admin"},
    ("PATCH", "/v1/service-kinds/{code}"): {"admin"},
    ("GET", "/v1/customers/me"): {"customer"},
    ("GET", "/v1/customers/me/addresses"): {"customer"},
    ("POST", "/v1/customers/me/addresses"): {"customer"},
    ("GET", "/v1/customers/me/addresses/{address_id}"): {"customer"},
    ("PATCH", "/v1/customers/me/addresses/{address_id}"): {"customer"},
    ("DELETE", "/v1/customers/me/addresses/{address_id}"): {"customer"},
    ("POST", "/v1/orders"): {"customer"},
    ("GET", "/v1/orders"): SIGNED_IN,
    ("GET", "/v1/orders/{order_id}"): SIGNED_IN,
    ("GET", "/v1/orders/{order_id}/events"): SIGNED_IN,
    ("GET", "/v1/orders/{order_id}/messages"): {"customer"},  # operations' messages to him
    ("POST", "/v1/orders/{order_id}/cancel"): {"customer", "admin"},
    ("GET", "/v1/orders/{order_id}/cancellation-quote"): {"customer"},
    ("POST", "/v1/orders/{order_id}/reschedule"): {"customer", "admin"},
    ("POST", "/v1/orders/{order_id}/consent"): {"customer", "admin"},
    ("POST", "/v1/orders/{order_id}/payment/retry"): {"customer"},
    ("GET", "/v1/technicians/me"): {"technician"},
    ("PATCH", "/v1/technicians/me"): {"technician"},
    ("GET", "/v1/technicians/me/certifications"): {"technician"},
    ("POST", "/v1/technicians/me/certifications"): {"technician"},
    ("PUT", "/v1/technicians/me/certifications/{certification_id}/photo"): {"technician"},
    ("PUT", "/v1/technicians/me/photo"): {"technician"},
    ("GET", "/v1/technicians/me/training-records"): {"technician"},
    ("GET", "/v1/orders/{order_id}/technician/profile"): {"customer"},  # his own order's only
    ("GET", "/v1/orders/{order_id}/technician/photo"): {"customer"},  # his own order's only
    ("GET", "/v1/certifications/{certification_id}/photo"): {"technician", "admin", "auditor"},  # his own only
    ("GET", "/v1/technicians/{technician_id}"): {"admin", "auditor"},
    ("GET", "/v1/technicians/{technician_id}/training-records"): {"admin", "auditor"},
    ("POST", "/v1/technicians/{technician_id}/training-records"): {"admin"},
    ("GET", "/v1/certifications"): {"admin", "auditor"},
    ("POST", "/v1/certifications/{certification_id}/verify"): {"admin"},
    ("POST", "/v1/certifications/{certification_id}/reject"): {"admin"},
    ("POST", "/v1/certifications/{certification_id}/revoke"): {"admin"},
    ("POST", "/v1/technicians/me/location"): {"technician"},
    ("POST", "/v1/technicians/me/online"): {"technician"},
    ("POST", "/v1/technicians/me/offline"): {"technician"},
    ("GET", "/v1/offers"): {"technician"},
    ("GET", "/v1/ops/alerts"): {"admin"},
    ("POST", "/v1/ops/alerts/{alert_id}/acknowledge"): {"admin"},
    ("GET", "/v1/ops/dead-letters"): {"admin", "auditor"},
    ("POST", "/v1/ops/dead-letters/{delivery_id}/retry"): {"admin"},
    ("POST", "/v1/ops/dead-letters/{delivery_id}/discard"): {"admin"},
    ("GET", "/v1/ops/engine"): {"admin", "auditor"},
    ("POST", "/v1/offers/{offer_id}/accept"): {"technician"},
    ("POST", "/v1/offers/{offer_id}/decline"): {"technician"},
    ("GET", "/v1/technicians/nearby"): {"customer"},
    ("GET", "/v1/operations/technicians"): {"admin"},
    ("POST", "/v1/customers/me/blocked-technicians"): {"customer"},
    ("GET", "/v1/notifications"): SIGNED_IN,
    ("POST", "/v1/notifications/{notification_id}/read"): {"customer", "technician", "admin"},
    ("GET", "/v1/ws/schema"): EVERYONE,
    ("GET", "/v1/push/vapid-public-key"): EVERYONE,  # a public key
    ("POST", "/v1/me/push-subscriptions"): {"technician"},
    ("DELETE", "/v1/me/push-subscriptions/{subscription_id}"): {"technician"},  # his own only
    ("GET", "/v1/safety/gas-leak"): EVERYONE,  # a household in danger may have no account
    ("GET", "/v1/stations"): SIGNED_IN,
    ("POST", "/v1/stations"): {"admin"},
    ("GET", "/v1/stations/{station_id}"): SIGNED_IN,
    ("PATCH", "/v1/stations/{station_id}"): {"admin"},
    ("GET", "/v1/stations/{station_id}/duty-staff"): {"admin"},
    ("PUT", "/v1/stations/{station_id}/duty-staff"): {"admin"},
    ("GET", "/v1/settlement-rules"): {"admin", "auditor"},
    ("POST", "/v1/settlement-rules"): {"admin"},
    ("POST", "/v1/orders/{order_id}/refunds"): {"admin"},
    ("POST", "/v1/settlements/{settlement_id}/release"): {"admin"},
    ("POST", "/v1/technicians/me/payout-account"): {"technician"},
    ("GET", "/v1/technicians/me/settlements"): {"technician"},
    ("GET", "/v1/technicians/me/earnings"): {"technician"},
    ("GET", "/v1/orders/{order_id}/receipt"): {"customer", "admin", "auditor"},  # a customer his own only
    ("POST", "/v1/webhooks/stripe"): EVERYONE,  # authenticated by the provider's signature
    ("GET", "/v1/settlements"): {"admin", "auditor"},
    ("GET", "/v1/settlements/{settlement_id}"): {"admin", "auditor"},
    ("GET", "/v1/settlements/{settlement_id}/evidence"): {"admin", "auditor"},
    ("GET", "/v1/settlements/{settlement_id}/evidence.zip"): {"admin", "auditor"},
    ("GET", "/v1/audit/ledger.csv"): {"admin", "auditor"},
    ("GET", "/v1/audit/settlements.csv"): {"admin", "auditor"},
    ("GET", "/v1/audit/ledger/verify"): {"admin", "auditor"},
    ("GET", "/v1/audit/reconcile"): {"admin", "auditor"},
    ("POST", "/v1/telemetry/{platform}"): EVERYONE,  # HMAC-signed by the platform, no bearer token
    ("POST", "/v1/devices"): {"admin"},
    ("GET", "/v1/devices"): {"admin", "auditor"},
    ("GET", "/v1/devices/{device_id}"): {"admin", "auditor"},
    ("POST", "/v1/concentrators"): {"admin"},
    ("GET", "/v1/telemetry-quarantine"): {"admin", "auditor"},
    ("GET", "/v1/devices/{device_id}/readings"): {"admin"},
    ("GET", "/v1/devices/{device_id}/frames"): {"admin"},
    ("GET", "/v1/valve-commands"): {"admin"},
    ("GET", "/v1/orders/{order_id}/meter-evidence"): {"admin", "auditor"},
    ("POST", "/v1/orders/{order_id}/review"): {"customer"},
    ("PATCH", "/v1/orders/{order_id}/review"): {"customer"},
    ("GET", "/v1/orders/{order_id}/review"): SIGNED_IN,
    ("POST", "/v1/orders/{order_id}/customer-rating"): {"technician"},
    ("GET", "/v1/customers/{customer_id}/ratings"): {"admin"},
    ("GET", "/v1/technicians/{technician_id}/reputation"): SIGNED_IN,
    ("POST", "/v1/reviews/{review_id}/appeals"): {"technician"},
    ("GET", "/v1/appeals"): {"admin", "auditor"},
    ("POST", "/v1/appeals/{appeal_id}/decision"): {"admin"},
    ("GET", "/v1/ratings/flags"): {"admin", "auditor"},
    ("GET", "/v1/jobs/{order_id}/qr"): {"technician"},
    ("POST", "/v1/jobs/{order_id}/verify-code"): {"technician"},
    ("POST", "/v1/jobs/{order_id}/depart"): {"technician"},
    ("POST", "/v1/jobs/{order_id}/arrive"): {"technician"},
    ("POST", "/v1/jobs/{order_id}/start"): {"technician"},
    ("POST", "/v1/jobs/{order_id}/no-access"): {"technician"},
    ("POST", "/v1/jobs/{order_id}/complete"): {"technician"},
    ("POST", "/v1/jobs/{order_id}/photos"): {"technician"},
    ("GET", "/v1/jobs/{order_id}/address"): {"technician"},
    ("POST", "/v1/jobs/{order_id}/contact"): {"technician"},
    ("GET", "/v1/orders/{order_id}/photos/{ref}"): SIGNED_IN,  # of an order he may see
    ("GET", "/v1/orders/{order_id}/technician"): {"customer"},
    ("POST", "/v1/orders/{order_id}/verify-technician"): {"customer"},
    ("POST", "/v1/orders/{order_id}/waive-verification"): {"customer"},
    ("POST", "/v1/orders/{order_id}/price-change/approve"): {"customer"},
    ("POST", "/v1/orders/{order_id}/price-change/reject"): {"customer"},
    ("GET", "/v1/orders/{order_id}/visit"): SIGNED_IN,
    ("GET", "/v1/verify/{token}"): EVERYONE,  # the signed QR payload is the credential
    ("GET", "/v1/hazards"): {"admin", "auditor"},
    ("GET", "/v1/stations/{station_id}/kpis"): {"admin", "auditor"},
    ("GET", "/v1/ops/orders/{order_id}"): {"admin"},
    ("GET", "/v1/ops/orders/{order_id}/technicians"): {"admin"},
    ("POST", "/v1/ops/orders/{order_id}/assign"): {"admin"},
    ("POST", "/v1/ops/orders/{order_id}/cancel"): {"admin"},
    ("POST", "/v1/ops/orders/{order_id}/messages"): {"admin"},
    ("GET", "/v1/ops/certifications"): {"admin"},
    ("POST", "/v1/ops/hazards/{hazard_id}/resolve"): {"admin"},
    ("GET", "/v1/technicians/me/shifts"): {"technician"},
    ("PUT", "/v1/technicians/me/shifts"): {"technician"},
    ("GET", "/v1/ops/technicians/{technician_id}/shifts"): {"admin", "auditor"},
    ("PUT", "/v1/ops/technicians/{technician_id}/shifts"): {"admin"},
    ("GET", "/v1/slots"): {"customer"},
    ("POST", "/v1/bookings"): {"customer"},
    ("POST", "/v1/bookings/{order_id}/reschedule"): {"customer", "admin"},
    ("GET", "/v1/technicians/me/day"): {"technician"},  # his own stops only
    ("GET", "/v1/ops/plans"): {"admin", "auditor"},
}


def app_routes() -> list[tuple[str, str]]:
    spec = create_app().openapi()
    return sorted((method.upper(), path) for path, ops in spec["paths"].items() for method in ops)


def test_every_route_has_a_declared_access_rule() -> None:
    undeclared = set(app_routes()) - set(ALLOWED)
    assert not undeclared, f"routes without an access rule in ALLOWED: {sorted(undeclared)}"


@pytest.fixture
async def headers_by_role(session: AsyncSession) -> dict[str, dict[str, str]]:
    customer = await make_customer(session)
    technician = await make_technician(session)
    _, auditor = await make_staff(session, "auditor")
    _, admin = await make_staff(session, "admin")
    return {"anonymous": {}, "customer": customer.headers, "technician": technician.headers,
            "auditor": auditor, "admin": admin}


def _concrete(path: str) -> str:
    return re.sub(r"\{code\}", "repair", re.sub(r"\{[a-z_]+\}", str(uuid.uuid4()), path))


@pytest.mark.parametrize("method,path", app_routes())
async def test_roles_outside_the_rule_are_refused(
    client: AsyncClient, headers_by_role: dict[str, dict[str, str]], method: str, path: str
) -> None:
    for role in ROLES:
        if role in ALLOWED[(method, path)]:
            continue
        response = await client.request(method, _concrete(path), headers=headers_by_role[role], json={})
        expected = {401} if role == "anonymous" else {403, 404}
        assert response.status_code in expected, (role, method, path, response.status_code, response.text)
        assert response.headers["content-type"] == "application/problem+json"


async def test_customer_never_sees_another_customers_order_or_address(client: AsyncClient, session: AsyncSession) -> None:
    owner = await make_customer(session)
    stranger = await make_customer(session)
    technician = await make_technician(session)
    order = (await client.post("/v1/orders", headers=owner.headers,
                               json={"kind": "repair", "address_id": str(owner.address.id)})).json()
    for headers in (stranger.headers, technician.headers):
        assert (await client.get(f"/v1/orders/{order['id']}", headers=headers)).status_code == 404
        assert (await client.get(f"/v1/orders/{order['id']}/events", headers=headers)).status_code == 404
        assert (await client.get("/v1/orders", headers=headers)).json()["data"] == []
    assert (await client.post(f"/v1/orders/{order['id']}/cancel", headers=stranger.headers,
                              json={"reason": "x"})).status_code == 404
    assert (await client.get(f"/v1/customers/me/addresses/{owner.address.id}", headers=stranger.headers)).status_code == 404
    assert (await client.delete(f"/v1/customers/me/addresses/{owner.address.id}", headers=stranger.headers)).status_code == 404
