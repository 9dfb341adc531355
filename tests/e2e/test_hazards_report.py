"""Hazards in the technician's report, in a real browser: one fixed on site (no follow-up), one
left for a follow-up that the customer sees in his language and consents to."""

from playwright.async_api import expect

from tests.e2e.test_order_flow import FAST, people  # noqa: F401 (people: fixture)
from tests.e2e.support import job_in_service


async def test_a_hazard_fixed_on_site_and_one_left_for_a_translated_followup(
    api_worker, people, new_context,  # noqa: ANN001, F811
) -> None:
    base = api_worker(**FAST)
    tech, customer = await job_in_service(new_context, base, people)

    await tech.fill("#work-done", "检查灶具")
    await tech.select_option("#hazard-category", "leaking_connector")
    await tech.select_option("#hazard-resolution", "fixed_on_site")
    await tech.click("#add-hazard")  # without what was done it is refused in the form
    await expect(tech.locator("#report-form > .error")).to_contain_text("处理内容")
    await tech.fill("#hazard-fix-text", "更换密封圈，复测无泄漏")
    await tech.click("#add-hazard")
    await tech.select_option("#hazard-category", "no_alarm")
    await tech.select_option("#hazard-resolution", "needs_followup")
    await tech.click("#add-hazard")
    await expect(tech.locator("#hazards-list li")).to_have_count(2)
    await tech.click("#job-complete")

    await expect(customer.locator("#order-status-pill")).to_have_text("已完成")
    fixed = customer.locator("#hazards li", has_text="接头漏气")
    await expect(fixed).to_contain_text("已现场处理")
    await expect(fixed).to_contain_text("更换密封圈")
    await expect(fixed.locator("a")).to_have_count(0)  # no follow-up for it
    left = customer.locator("#hazards li", has_text="未装燃气报警器")
    await expect(left).to_contain_text("待整改")
    await left.locator("a").click()
    await expect(customer.locator("#followup-hazard")).to_contain_text("未装燃气报警器（一般）")
    await expect(customer.locator("#order-status")).not_to_contain_text("rectify")
    await customer.click("#consent-followup")
    await expect(customer.locator("#order-status-pill")).not_to_have_text("待您确认")
