"""The event engine in the operations console, in a real browser: a subscriber's handler fails
until its deliveries become dead letters; the console shows them (topic, subscriber, tries, last
error) and the engine's health without a reload; the operator retries one after a confirmation
and it leaves the list and is delivered; he discards another, which is never delivered.

The API process runs no worker: the test process plays the worker that holds the failing
subscriber (in a real deployment each worker knows every subscription), so that nothing else
delivers the test's events. Screenshots land in test-artifacts/e2e."""

import uuid

import pytest
from playwright.async_api import Page, expect
from sqlmodel import select

from kit.config import get_settings
from kit.db import session_scope
from kit.events import drain, publish, subscribe, unsubscribe
from kit.models import Delivery, OutboxMessage
from tests.backbone.engine_support import empty_queue  # noqa: F401 (a fixture)
from tests.e2e.support import DESKTOP
from tests.e2e.test_opsconsole_flow import shot, sign_in
from tests.factories import make_staff

TOPIC = "e2e.tariff_synced"
SUBSCRIBER = "billing"
TRIES = 3


@pytest.fixture
def billing(monkeypatch):  # noqa: ANN001, ANN201
    """A subscriber whose handler fails while `broken` holds, as a provider that is down would."""
    state = {"broken": True, "delivered": []}

    async def on_tariff_synced(_session, payload: dict) -> None:  # noqa: ANN001
        if state["broken"]:
            raise TimeoutError("tariff provider did not answer within 2 s")
        state["delivered"].append(payload["n"])

    monkeypatch.setattr(get_settings(), "events_max_attempts", TRIES)
    subscribe(TOPIC, on_tariff_synced, subscriber=SUBSCRIBER)
    yield state
    unsubscribe(TOPIC, on_tariff_synced)


async def _work() -> None:
    """One pass of this process's worker over the pending deliveries, committed."""
    async with session_scope() as session:
        await drain(session)


async def _dead_letter(n: str) -> int:
    """An event published and tried until its delivery is a dead letter."""
    async with session_scope() as session:
        await publish(session, TOPIC, {"order_id": str(uuid.uuid4()), "n": n})
    for _ in range(TRIES):
        await _work()
    delivery = await _delivery_of(n)
    assert (delivery.state, delivery.attempts) == ("dead", TRIES)
    return delivery.id


async def _delivery_of(n: str) -> Delivery:
    async with session_scope() as session:
        return (await session.exec(select(Delivery).join(OutboxMessage, OutboxMessage.id == Delivery.event_id).where(
            Delivery.topic == TOPIC, OutboxMessage.payload["n"].astext == n))).one()


async def _confirm(ops: Page, action: str, delivery_id: int) -> None:
    await ops.click(f"#dead-{action}-{delivery_id}")
    await ops.click(f"#dead-confirm-{delivery_id}")


async def test_ops_see_dead_letters_live_retry_one_and_discard_another(
    api_worker, committed_sessions, billing, empty_queue, new_context, offline, artifacts,  # noqa: ANN001, F811
) -> None:
    async with committed_sessions() as session:
        admin, _ = await make_staff(session, "admin")
        await session.commit()
    base = api_worker()
    ops = await (await new_context(viewport=DESKTOP)).new_page()
    await sign_in(ops, base, "ops", admin.email)
    engine = ops.locator("#engine")
    await expect(engine.locator("#no-dead-letters")).to_have_text("没有死信。")
    await expect(engine.locator("#engine-workers")).to_have_text("无工作进程在运行")

    # Dead while the console is open: it shows up on the next refresh, without a reload.
    first = await _dead_letter("1")
    second = await _dead_letter("2")
    row = engine.locator(f"tr[data-dead-letter='{first}']")
    await expect(row).to_contain_text(TOPIC)
    await expect(row).to_contain_text("TimeoutError: tariff provider did not answer within 2 s")
    await expect(row.locator("td").nth(4)).to_have_text(str(TRIES))
    await expect(engine.locator(f"tr[data-dead-letter='{second}']")).to_be_visible()
    await expect(engine.locator("#engine-dead")).to_have_text("2")
    await engine.scroll_into_view_if_needed()
    await shot(ops, artifacts, "ops-engine-01-dead-letters")
    await engine.screenshot(path=str(artifacts / "ops-engine-01-panel.png"))

    # A retry asks first; "cancel" leaves it as it was.
    await ops.click(f"#dead-retry-{first}")
    await expect(row).to_contain_text("确定重新投递？")
    await engine.screenshot(path=str(artifacts / "ops-engine-02-confirm-retry.png"))
    await ops.click(f"#dead-cancel-{first}")
    await expect(ops.locator(f"#dead-retry-{first}")).to_be_visible()

    billing["broken"] = False  # the provider is back
    await _confirm(ops, "retry", first)
    await expect(row).to_have_count(0)
    await _work()
    assert (await _delivery_of("1")).state == "done" and billing["delivered"] == ["1"]

    await _confirm(ops, "discard", second)
    await expect(engine.locator(f"tr[data-dead-letter='{second}']")).to_have_count(0)
    await expect(engine.locator("#no-dead-letters")).to_be_visible()
    await expect(engine.locator("#engine-dead")).to_have_text("0")
    await _work()
    assert (await _delivery_of("2")).state == "discarded" and billing["delivered"] == ["1"]
    await engine.screenshot(path=str(artifacts / "ops-engine-03-cleared.png"))

    # Every word of the panel in English too.
    billing["broken"] = True
    await _dead_letter("3")
    await ops.select_option("#lang-select", "en")
    await expect(engine.locator("#engine-h")).to_have_text("Event engine")
    await expect(engine.locator("tr[data-dead-letter]")).to_have_count(1)
    await ops.click(f"#dead-discard-{(await _delivery_of('3')).id}")
    await expect(engine).to_contain_text("Give it up? It will never be delivered.")
    await engine.screenshot(path=str(artifacts / "ops-engine-04-english.png"))
    assert offline.blocked == [], f"pages reached outside the machine: {offline.blocked}"
