"""Operations' messages reach the customer's order page: listed on his order in the words
written, pushed on the order's socket, and seen by nobody else."""

import json

from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from kit import after_commit
from kit.fanout import order_channel
from tests.factories import make_customer, make_staff, make_technician

TEXT = "师傅堵在路上，预计晚到 10 分钟，<b>抱歉</b>"


async def test_the_customer_reads_operations_messages_on_his_order(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    owner = await make_customer(session)
    stranger = await make_customer(session)
    technician = await make_technician(session)
    _, admin = await make_staff(session, "admin")
    order = (await client.post("/v1/orders", headers=owner.headers,
                               json={"kind": "repair", "address_id": str(owner.address.id)})).json()
    assert (await client.get(f"/v1/orders/{order['id']}/messages", headers=owner.headers)).json()["data"] == []

    listener = redis.pubsub()
    await listener.subscribe(order_channel(order["id"]))
    after_commit.discard(session)
    sent = await client.post(f"/v1/ops/orders/{order['id']}/messages", headers=admin, json={"to": "customer", "text": TEXT})
    assert sent.status_code == 201, sent.text
    await after_commit.run(session)
    pushed = None
    for _ in range(20):
        message = await listener.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None:
            pushed = json.loads(message["data"])
            break
    await listener.aclose()
    assert pushed is not None and pushed["type"] == "notification"
    assert (pushed["notification"]["kind"], pushed["notification"]["body"]) == ("message", TEXT)

    response = await client.get(f"/v1/orders/{order['id']}/messages", headers=owner.headers)
    assert response.status_code == 200, response.text
    [shown] = response.json()["data"]
    assert (shown["text"], shown["id"], shown["created_at"]) == (TEXT, sent.json()["id"], sent.json()["created_at"])
    assert (await client.get(f"/v1/orders/{order['id']}/messages", headers=stranger.headers)).status_code == 404
    assert (await client.get(f"/v1/orders/{order['id']}/messages", headers=technician.headers)).status_code == 403
