"""One delivery per subscriber: backoff, dead letters visible to operations, order kept per
order, NotReady retried later; other subscribers are never held up."""

import uuid
from datetime import timedelta

import pytest
from httpx import AsyncClient
from pgqueuer.errors import RetryRequested
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit import events
from kit.config import get_settings
from kit.errors import NotReady
from kit.events import drain, publish, subscribe, unsubscribe
from kit.models import Delivery
from tests.factories import make_staff

TOPIC = "test.engine_event"


@pytest.fixture
def calls():  # noqa: ANN201
    """Two subscribers of TOPIC: `flaky` fails while `failing` holds order ids, `steady` records."""
    seen: dict[str, list[str]] = {"steady": [], "flaky": []}
    failing: set[str] = set()
    not_ready: dict[str, int] = {}

    async def steady(_session: AsyncSession, payload: dict) -> None:
        seen["steady"].append(payload["n"])

    async def flaky(_session: AsyncSession, payload: dict) -> None:
        if payload["order_id"] in failing:
            raise RuntimeError("provider declined")
        if not_ready.get(payload["order_id"], 0) > 0:
            not_ready[payload["order_id"]] -= 1
            raise NotReady("hold not placed yet", retry_after_s=7)
        seen["flaky"].append(payload["n"])

    subscribe(TOPIC, steady, subscriber="steady")
    subscribe(TOPIC, flaky, subscriber="flaky")
    yield seen, failing, not_ready
    unsubscribe(TOPIC, steady)
    unsubscribe(TOPIC, flaky)


async def _deliveries(session: AsyncSession, subscriber: str) -> list[Delivery]:
    return list((await session.exec(select(Delivery).where(Delivery.topic == TOPIC, Delivery.subscriber == subscriber)
                                    .order_by(Delivery.id).execution_options(populate_existing=True))).all())


async def test_a_failing_handler_backs_off_and_becomes_a_dead_letter_ops_can_retry(
        client: AsyncClient, session: AsyncSession, calls, monkeypatch) -> None:  # noqa: ANN001
    seen, failing, _ = calls
    monkeypatch.setattr(get_settings(), "events_max_attempts", 3)
    order = str(uuid.uuid4())
    failing.add(order)
    await publish(session, TOPIC, {"order_id": order, "n": "1"})
    delays = []
    for _ in range(3):
        await drain(session)
        (delivery,) = await _deliveries(session, "flaky")
        delays.append(delivery.next_attempt_at)
    assert seen["steady"] == ["1"]  # the other subscriber got it at once, once
    assert delivery.state == "dead" and delivery.attempts == 3
    assert "provider declined" in delivery.last_error
    # the wait doubled: 1 s after the first failure, 2 s after the second (less up to 10 % jitter);
    # the attempts themselves are apart by however long a loaded machine took, so only a floor here
    assert delays[1] - delays[0] > timedelta(seconds=0.7)
    assert [timedelta(seconds=0.9 * 2 ** n) <= events.backoff(n + 1) <= timedelta(seconds=2 ** n)
            for n in range(3)] == [True, True, True]

    _, admin = await make_staff(session, "admin")
    _, auditor = await make_staff(session, "auditor")
    listed = await client.get("/v1/ops/dead-letters", headers=auditor)
    assert listed.status_code == 200, listed.text
    (letter,) = [d for d in listed.json()["data"] if d["id"] == delivery.id]
    assert letter["subscriber"] == "flaky" and letter["order_id"] == order and letter["payload"]["n"] == "1"
    assert (await client.post(f"/v1/ops/dead-letters/{delivery.id}/retry", headers=auditor)).status_code == 403

    failing.clear()
    retried = await client.post(f"/v1/ops/dead-letters/{delivery.id}/retry", headers=admin)
    assert retried.status_code == 200 and retried.json()["state"] == "pending"
    await drain(session)
    assert seen["flaky"] == ["1"]
    again = await client.post(f"/v1/ops/dead-letters/{delivery.id}/discard", headers=admin)
    assert again.status_code == 409 and again.headers["content-type"].startswith("application/problem+json")
    missing = await client.post("/v1/ops/dead-letters/999999999/discard", headers=admin)
    assert missing.status_code == 404


async def test_discarded_dead_letters_leave_the_list(client: AsyncClient, session: AsyncSession, calls,
                                                    monkeypatch) -> None:  # noqa: ANN001
    _, failing, _ = calls
    monkeypatch.setattr(get_settings(), "events_max_attempts", 1)
    order = str(uuid.uuid4())
    failing.add(order)
    await publish(session, TOPIC, {"order_id": order, "n": "1"})
    await drain(session)
    (delivery,) = await _deliveries(session, "flaky")
    _, admin = await make_staff(session, "admin")
    discarded = await client.post(f"/v1/ops/dead-letters/{delivery.id}/discard", headers=admin)
    assert discarded.status_code == 200 and discarded.json()["state"] == "discarded"
    listed = await client.get("/v1/ops/dead-letters", headers=admin)
    assert delivery.id not in [d["id"] for d in listed.json()["data"]]


async def test_deliveries_of_one_order_wait_for_the_earlier_one(session: AsyncSession, calls) -> None:  # noqa: ANN001
    seen, failing, _ = calls
    order, other = str(uuid.uuid4()), str(uuid.uuid4())
    failing.add(order)
    await publish(session, TOPIC, {"order_id": order, "n": "a1"})
    await publish(session, TOPIC, {"order_id": other, "n": "b1"})
    await publish(session, TOPIC, {"order_id": order, "n": "a2"})
    await drain(session)
    assert seen["flaky"] == ["b1"]  # a2 waits behind the failed a1; the other order goes on
    assert seen["steady"] == ["a1", "b1", "a2"]
    failing.clear()
    await drain(session)
    assert seen["flaky"] == ["b1", "a1", "a2"]


async def test_an_unordered_subscriber_does_not_wait_for_the_orders_earlier_delivery(session: AsyncSession) -> None:
    order, pushed = str(uuid.uuid4()), []

    async def push(_session: AsyncSession, payload: dict) -> None:
        if payload["technician"] == "t1":  # his push service is down
            raise RuntimeError("503 from the push service")
        pushed.append(payload["technician"])

    subscribe(TOPIC, push, subscriber="push_test")
    events.mark_unordered("push_test")
    try:
        for technician in ("t1", "t2", "t3"):  # one round's offers: one order, three technicians
            await publish(session, TOPIC, {"order_id": order, "technician": technician})
        await drain(session)
    finally:
        unsubscribe(TOPIC, push)
        events._unordered.discard("push_test")
    assert pushed == ["t2", "t3"]  # not held behind t1's retries
    assert [d.order_key for d in await _deliveries(session, "push_test")] == [None, None, None]


async def test_not_ready_is_retried_later_without_counting_as_a_failure(session: AsyncSession, calls) -> None:  # noqa: ANN001
    seen, _, not_ready = calls
    order = str(uuid.uuid4())
    not_ready[order] = 2
    await publish(session, TOPIC, {"order_id": order, "n": "1"})
    await drain(session)
    (delivery,) = await _deliveries(session, "flaky")
    assert delivery.state == "pending" and delivery.attempts == 0 and delivery.deferrals == 1
    assert 6 < (delivery.next_attempt_at - delivery.created_at).total_seconds() < 60
    await drain(session)
    await drain(session)
    (delivery,) = await _deliveries(session, "flaky")
    assert delivery.state == "done" and delivery.deferrals == 2 and seen["flaky"] == ["1"]


async def _one_failing_event_steady_delivered(committed_sessions, failing: set[str]) -> Delivery:  # noqa: ANN001
    """A committed event whose `flaky` delivery fails and whose `steady` one is done; the flaky one."""
    order = str(uuid.uuid4())
    failing.add(order)
    async with committed_sessions() as session:
        await publish(session, TOPIC, {"order_id": order, "n": "1"})
        await session.commit()
        (flaky,), (steady,) = await _deliveries(session, "flaky"), await _deliveries(session, "steady")
    await events.deliver(steady.id)
    return flaky


async def test_the_engine_job_asks_for_a_retry_after_the_backoff(committed_sessions, calls, empty_queue) -> None:  # noqa: ANN001
    """The worker's job records the failed try in its own committed transaction and asks
    pgqueuer for a retry after the backoff; the other subscriber's delivery is done."""
    seen, failing, _ = calls
    flaky = await _one_failing_event_steady_delivered(committed_sessions, failing)
    with pytest.raises(RetryRequested) as retry:
        await events.deliver(flaky.id)
    assert timedelta(seconds=0.8) < retry.value.delay <= timedelta(seconds=1)
    async with committed_sessions() as session:
        assert [d.state for d in await _deliveries(session, "steady")] == ["done"]
        (flaky,) = await _deliveries(session, "flaky")
        assert flaky.state == "pending" and flaky.attempts == 1
    assert seen["steady"] == ["1"]


async def test_a_failed_job_whose_delivery_got_done_is_no_dead_letter(committed_sessions, calls, empty_queue) -> None:  # noqa: ANN001
    """pgqueuer can hold a job as failed while the database was away, and the safety net
    delivers it since: the engine no longer counts it; a failed job of an undone delivery stays."""
    from sqlalchemy import text

    from kit import jobs

    _, failing, _ = calls
    flaky = await _one_failing_event_steady_delivered(committed_sessions, failing)
    async with committed_sessions() as session:
        await session.exec(text("UPDATE pgqueuer SET status = 'failed'"))
        await session.commit()
        assert (await jobs.engine_health(session))["dead_letters"] == 2
        await events.requeue_stalled(session)
        await session.commit()
        assert (await jobs.engine_health(session))["dead_letters"] == 1
        left = (await session.exec(text("SELECT convert_from(payload, 'UTF8') FROM pgqueuer"))).one()[0]
        assert str(flaky.id) in left
