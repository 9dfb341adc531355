"""Two changes of an order in quick succession, the customer's page reloading the order after
each push: an answer that comes back late must not draw the older state over the newer one
(seen in CI: the page stuck at "accepted" after the technician set out). The first reload's
answer is held back in the browser while the second change happens."""

import asyncio

from playwright.async_api import Route, expect

from dispatch import service as dispatch
from tests.e2e.support import PHONE, accepted_repair, sign_in

HOLD_S = 3.0
OPS = dispatch.Actor("admin", "e2e")


async def test_a_late_answer_never_draws_an_older_status_over_a_newer_one(
    api_worker, committed_sessions, new_context, offline,  # noqa: ANN001
) -> None:
    base = api_worker(GASDISPATCH_EMBEDDED_WORKER="true")
    async with committed_sessions() as session:
        customer, _, order = await accepted_repair(session)
        await session.commit()
    page = await (await new_context(viewport=PHONE, is_mobile=True, has_touch=True)).new_page()
    await sign_in(page, base, "customer", customer.account.email)
    await page.goto(f"{base}/app/customer/#order/{order.id}")
    pill = page.locator("#order-status-pill")
    await expect(pill).to_have_text("已接单")

    held = asyncio.Event()

    async def hold_the_first_answer(route: Route) -> None:
        response = await route.fetch()  # the order as the server has it now
        if not held.is_set():
            held.set()
            await asyncio.sleep(HOLD_S)
        await route.fulfill(response=response)

    await page.route(f"{base}/v1/orders/{order.id}", hold_the_first_answer)
    async with committed_sessions() as session:
        await dispatch.transition(session, order.id, "depart", OPS)
        await session.commit()
    await asyncio.wait_for(held.wait(), 30)  # the page asked for the order after the push; "en route" is held
    async with committed_sessions() as session:
        await dispatch.transition(session, order.id, "arrive", OPS)
        await session.commit()
    await expect(pill).to_have_text("已到达", timeout=15_000)
    await page.wait_for_timeout(HOLD_S * 1000 + 1000)  # the held answer has landed meanwhile
    await expect(pill).to_have_text("已到达")
