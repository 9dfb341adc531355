"""The Web Push subscription routes: a technician stores and removes his devices' subscriptions;
bad input is a 422 problem; nobody touches another account's subscription."""

import base64
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.models import PushSubscription
from kit.config import get_settings
from tests.factories import make_customer, make_technician

ENDPOINT = "https://fcm.googleapis.com/fcm/send/dAbC123:APA91bHk"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def device(endpoint: str = ENDPOINT) -> dict:
    public = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return {"endpoint": endpoint, "keys": {"p256dh": b64(public), "auth": b64(os.urandom(16))},
            "expirationTime": None}


async def test_the_page_gets_the_installs_vapid_public_key(client: AsyncClient) -> None:
    answer = await client.get("/v1/push/vapid-public-key")
    assert answer.status_code == 200
    key = base64.urlsafe_b64decode(answer.json()["public_key"] + "=")
    assert len(key) == 65 and key[0] == 4  # an uncompressed P-256 point, as pushManager.subscribe wants
    assert get_settings().vapid_private_key not in answer.text


async def test_a_technician_subscribes_a_device_renews_it_and_unsubscribes(
    client: AsyncClient, session: AsyncSession,
) -> None:
    technician = await make_technician(session)
    first = await client.post("/v1/me/push-subscriptions", headers=technician.headers, json=device())
    assert first.status_code == 201, first.text
    assert first.json()["endpoint"] == ENDPOINT
    renewed = device()
    again = await client.post("/v1/me/push-subscriptions", headers=technician.headers, json=renewed)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    stored = (await session.exec(select(PushSubscription).where(PushSubscription.endpoint == ENDPOINT)
                                 .execution_options(populate_existing=True))).one()
    assert stored.p256dh == renewed["keys"]["p256dh"] and stored.account_id == technician.account.id

    gone = await client.delete(f"/v1/me/push-subscriptions/{first.json()['id']}", headers=technician.headers)
    assert gone.status_code == 204
    assert (await session.exec(select(PushSubscription).where(PushSubscription.endpoint == ENDPOINT))).first() is None


async def test_a_phone_signed_in_by_another_technician_alerts_him_only(client: AsyncClient, session: AsyncSession) -> None:
    before, after = await make_technician(session), await make_technician(session)
    first = await client.post("/v1/me/push-subscriptions", headers=before.headers, json=device())
    taken = await client.post("/v1/me/push-subscriptions", headers=after.headers, json=device())
    assert taken.status_code == 200 and taken.json()["id"] == first.json()["id"]
    rows = (await session.exec(select(PushSubscription).execution_options(populate_existing=True))).all()
    assert [row.account_id for row in rows] == [after.account.id]


async def test_another_account_cannot_delete_a_subscription(client: AsyncClient, session: AsyncSession) -> None:
    owner, other = await make_technician(session), await make_technician(session)
    stored = (await client.post("/v1/me/push-subscriptions", headers=owner.headers, json=device())).json()
    refused = await client.delete(f"/v1/me/push-subscriptions/{stored['id']}", headers=other.headers)
    assert refused.status_code == 404
    assert refused.headers["content-type"] == "application/problem+json"
    customer = await make_customer(session)
    assert (await client.delete(f"/v1/me/push-subscriptions/{stored['id']}", headers=customer.headers)).status_code == 403
    assert (await client.delete(f"/v1/me/push-subscriptions/{stored['id']}")).status_code == 401
    assert await session.get(PushSubscription, stored["id"]) is not None


def _broken(change: str) -> dict:
    body = device()
    if change == "no-keys":
        del body["keys"]
    elif change == "http-endpoint":
        body["endpoint"] = ENDPOINT.replace("https:", "http:")
    elif change == "internal-host":
        body["endpoint"] = "https://10.0.0.5:6379/anything-at-all"
    elif change == "credentials-in-url":
        body["endpoint"] = "https://user:pw@fcm.googleapis.com/fcm/send/x"
    elif change == "backslash-host":
        body["endpoint"] = "https://127.0.0.1\\.push.apple.com/x"
    elif change == "lookalike-host":
        body["endpoint"] = "https://fcm.googleapis.com.evil.example/fcm/send/x"
    elif change == "key-off-curve":
        body["keys"]["p256dh"] = b64(b"\x04" + b"\x01" * 64)
    elif change == "key-not-base64":
        body["keys"]["p256dh"] = "!" * 87
    elif change == "short-auth":
        body["keys"]["auth"] = b64(os.urandom(8)) + "AAAAAAAA"
    elif change == "long-endpoint":
        body["endpoint"] = ENDPOINT + "x" * 1000
    return body


@pytest.mark.parametrize("change", ["no-keys", "http-endpoint", "internal-host", "credentials-in-url",
                                    "backslash-host", "lookalike-host", "key-off-curve", "key-not-base64", "short-auth",
                                    "long-endpoint"])
async def test_bad_subscriptions_are_422_problems(client: AsyncClient, session: AsyncSession, change: str) -> None:
    technician = await make_technician(session)
    refused = await client.post("/v1/me/push-subscriptions", headers=technician.headers, json=_broken(change))
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "/problems/validation-error"
    assert (await session.exec(select(PushSubscription))).first() is None


async def test_malformed_json_is_a_problem(client: AsyncClient, session: AsyncSession) -> None:
    technician = await make_technician(session)
    refused = await client.post("/v1/me/push-subscriptions", content=b'{"endpoint": ',
                                headers={**technician.headers, "content-type": "application/json"})
    assert refused.status_code in (400, 422)
    assert refused.headers["content-type"] == "application/problem+json"
