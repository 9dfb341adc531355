"""The customer's page reads the order (a technician on the job), then his door card; when the
job ends between the two reads (seen in CI: completed while the page redrew), the card's 409
no-visit-in-progress must not surface as an uncaught error: the page hides the card and the
status push redraws it. The card's answer is held in the browser while the order is cancelled."""

import asyncio

from playwright.async_api import Route, expect

from dispatch import service as dispatch
from tests.e2e.support import PHONE, accepted_repair, sign_in


async def test_the_door_card_of_a_job_that_just_ended_is_hidden_without_an_error(
    api_worker, committed_sessions, new_context, offline,  # noqa: ANN001
) -> None:
    base = api_worker(GASDISPATCH_EMBEDDED_WORKER="true")
    async with committed_sessions() as session:
        customer, _, order = await accepted_repair(session)
        await session.commit()
    asked, ended = asyncio.Event(), asyncio.Event()

    async def answer_after_the_job_ended(route: Route) -> None:
        asked.set()
        await ended.wait()
        await route.fulfill(response=await route.fetch())  # the server's answer now: 409

    page = await (await new_context(viewport=PHONE, is_mobile=True, has_touch=True)).new_page()
    await page.route(f"{base}/v1/orders/{order.id}/technician", answer_after_the_job_ended)
    await sign_in(page, base, "customer", customer.account.email)
    await page.goto(f"{base}/app/customer/#order/{order.id}")
    await asyncio.wait_for(asked.wait(), 30)  # the page read the order as accepted and asks for the card
    async with committed_sessions() as session:
        await dispatch.transition(session, order.id, "cancel", dispatch.Actor.system(), reason="e2e")
        await session.commit()
    ended.set()
    await expect(page.locator("#order-status-pill")).to_have_text("已取消", timeout=15_000)
    await expect(page.locator("#identity")).to_be_hidden()
