""""I smell gas" on a 360 px phone in Chinese: signed out, the landing page and the customer
app's sign-in screen give the safety steps and the emergency numbers and create nothing; signed
in, one tap reports the leak and the order page shows the steps; a second report from that page
opens the same order. In English too, where the numbers follow the city of the chosen address.
The screenshots land in the test's tmp dir."""

from pathlib import Path

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select

from dispatch.cities import ensure_city
from dispatch.models import Address, Order
from dispatch.seed import CITIES
from dispatch.stations import create_station
from kit.geo import point
from tests.e2e.support import CENTER, PHONE, square, shot
from tests.factories import PASSWORD, make_customer

STEP_TEXTS = ["立即离开房间，带家人到室外。", "不要点火、吸烟，不要开关电灯或任何电器。", "不要在室内打电话，到室外再拨打。",
              "在安全的情况下打开门窗通风。", "燃气表阀门伸手可及时，将其关闭。"]
DANGER_RED = "rgb(180, 35, 24)"  # --danger in api/web/shared/app.css

# Runs in the page: size and colours of the red emergency controls that are visible.
_RED_BUTTONS = """
(selector) => [...document.querySelectorAll(selector)].filter((el) => el.offsetWidth).map((el) => {
  const box = el.getBoundingClientRect();
  const style = getComputedStyle(el);
  return { text: el.textContent.trim(), width: box.width, height: box.height, background: style.backgroundColor,
           color: style.color, fontSize: parseFloat(style.fontSize) };
})
"""


@pytest.fixture
async def household(committed_sessions):  # noqa: ANN001, ANN201
    async with committed_sessions() as session:
        customer = await make_customer(session, *CENTER)
        await session.commit()
    return customer


async def emergencies(committed_sessions, customer_id) -> list[Order]:  # noqa: ANN001
    async with committed_sessions() as session:
        return list((await session.exec(select(Order).where(Order.customer_id == customer_id))).scalars())


async def assert_big_and_red(page: Page, selector: str, count: int) -> None:
    buttons = await page.evaluate(_RED_BUTTONS, selector)
    assert len(buttons) == count, buttons
    for button in buttons:
        assert button["height"] >= 56 and button["width"] >= 300, button  # nearly the phone's width
        assert (button["background"], button["color"]) == (DANGER_RED, "rgb(255, 255, 255)"), button
        assert button["fontSize"] >= 18, button


async def expect_advice(page: Page) -> None:
    dialog = page.locator("#smellgas-dialog")
    await expect(dialog.locator(".gas-steps li")).to_have_text(STEP_TEXTS)
    await expect(dialog.locator("a.gas-call")).to_have_text(["燃气抢险 96777", "火警 119"])
    assert [await link.get_attribute("href") for link in await dialog.locator("a.gas-call").all()] == ["tel:96777", "tel:119"]


async def test_smell_gas_signed_out_gives_steps_and_hotline_and_signed_in_reports_with_one_tap(
    api_worker, household, committed_sessions, new_context, tmp_path: Path,  # noqa: ANN001
) -> None:
    base = api_worker()
    context = await new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = await context.new_page()

    await page.goto(f"{base}/app/")
    await assert_big_and_red(page, "#smell-gas", 1)
    await shot(page, tmp_path, "01-landing")
    await page.click("#smell-gas")
    await expect_advice(page)
    await expect(page.locator("#smellgas-report")).to_have_count(0)
    await expect(page.locator("#smellgas-signed-out")).to_be_visible()
    await assert_big_and_red(page, "#smellgas-dialog a.gas-call", 2)
    await shot(page, tmp_path, "02-landing-signed-out-advice")

    await page.click("#smellgas-sign-in")  # to the customer app's sign-in screen, which has the same entry
    await expect(page.locator("#login-form")).to_be_visible()
    await page.click("#smell-gas")
    await expect_advice(page)
    await expect(page.locator("#smellgas-report")).to_have_count(0)
    await shot(page, tmp_path, "03-sign-in-screen-advice")
    assert await emergencies(committed_sessions, household.customer.id) == []

    await page.click("#smellgas-sign-in")
    await expect(page.locator("#smellgas-dialog")).to_have_count(0)
    await page.fill("#login-email", household.account.email)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await expect(page.locator("#smellgas-address")).to_have_value(str(household.address.id))
    await assert_big_and_red(page, "#smellgas-report, #smellgas-dialog a.gas-call", 3)
    await shot(page, tmp_path, "04-signed-in-report")

    await page.click("#smellgas-report")
    await expect(page.locator("#order-status-pill")).to_be_visible()
    [order] = await emergencies(committed_sessions, household.customer.id)
    assert (order.kind, order.priority, order.address_id) == ("emergency_leak", "emergency", household.address.id)
    assert page.url.endswith(f"#order/{order.id}")
    await expect(page.locator(f"#safety-{order.id} .gas-steps li")).to_have_text(STEP_TEXTS)
    await expect(page.locator(f"#safety-{order.id} a.gas-call")).to_have_text(["燃气抢险 96777", "火警 119"])
    await page.evaluate("window.scrollTo(0, 0)")
    await shot(page, tmp_path, "05-emergency-order-page")

    await page.click("#smell-gas")  # from the order page: the home's open gas-leak order, not a second one
    await expect(page.locator("#smellgas-address")).to_have_value(str(household.address.id))
    await page.click("#smellgas-report")
    await expect(page.locator(".toast").last).to_have_text("该地址已有抢险单，抢险人员正在处理。")
    assert page.url.endswith(f"#order/{order.id}")
    assert [o.id for o in await emergencies(committed_sessions, household.customer.id)] == [order.id]


EN_STEP_TEXTS = ["Leave the room now and take everyone outside.",
                 "No flames or smoking; do not touch light switches or any electrical appliance.",
                 "Make no phone calls inside; call from outdoors.", "Open doors and windows if it is safe to do so.",
                 "Close the valve at the gas meter if you can reach it."]
SHANGHAI = CITIES["shanghai"]


@pytest.fixture
async def two_city_household(committed_sessions):  # noqa: ANN001, ANN201
    """A home in the demo city and the parents' flat in Shanghai, each city with a station; the
    Shanghai row holds the seed's hotline (the demo city keeps the settings' 96777)."""
    async with committed_sessions() as session:
        await create_station(session, name="西湖社区服务站", city="demo", lon=CENTER[0], lat=CENTER[1],
                             service_area=square(*CENTER, 0.03), daily_capacity=40)
        (await ensure_city(session, "shanghai", name=SHANGHAI.name)).hotline = SHANGHAI.hotline
        await create_station(session, name=SHANGHAI.station_names[0], city="shanghai", lon=SHANGHAI.center[0],
                             lat=SHANGHAI.center[1], service_area=square(*SHANGHAI.center, 0.03), daily_capacity=40)
        customer = await make_customer(session, *CENTER)
        parents = Address(customer_id=customer.customer.id, label="Parents", line="Xuhui Rd 8",
                          location=point(*SHANGHAI.center))
        session.add(parents)
        await session.commit()
    return customer, parents


async def test_smell_gas_in_english_gives_the_hotline_of_the_chosen_addresss_city(
    api_worker, two_city_household, committed_sessions, new_context, tmp_path: Path,  # noqa: ANN001
) -> None:
    household, parents = two_city_household
    base = api_worker()
    page = await (await new_context(viewport=PHONE, is_mobile=True, has_touch=True)).new_page()
    dialog = page.locator("#smellgas-dialog")

    await page.goto(f"{base}/app/")
    await page.select_option("#lang-select", "en")
    await expect(page.locator("#smell-gas")).to_have_text("I smell gas")
    await page.click("#smell-gas")
    await expect(dialog.locator(".gas-steps li")).to_have_text(EN_STEP_TEXTS)
    await expect(dialog.locator("a.gas-call")).to_have_text(["Gas emergency 96777", "Fire service 119"])
    await expect(page.locator("#smellgas-signed-out")).to_have_text("No account needed: call a number above from outside.")
    await shot(page, tmp_path, "en-01-landing-signed-out-advice")

    await page.click("#smellgas-sign-in")
    await page.fill("#login-email", household.account.email)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await expect(dialog.locator(".gas-steps li")).to_have_text(EN_STEP_TEXTS)
    await expect(page.locator("#smellgas-report")).to_have_text("Report the gas leak now")
    # The dialog opens on the first address, whichever it is, with the numbers of its city.
    first = await page.locator("#smellgas-address").input_value()
    number = "96777" if first == str(household.address.id) else SHANGHAI.hotline
    await expect(dialog.locator("a.gas-call")).to_have_text([f"Gas emergency {number}", "Fire service 119"])

    await page.select_option("#smellgas-address", str(household.address.id))
    await expect(dialog.locator("a.gas-call")).to_have_text(["Gas emergency 96777", "Fire service 119"])

    await page.select_option("#smellgas-address", str(parents.id))  # the parents' flat, in Shanghai
    await expect(dialog.locator("a.gas-call")).to_have_text([f"Gas emergency {SHANGHAI.hotline}", "Fire service 119"])
    assert await dialog.locator("a.gas-call").first.get_attribute("href") == f"tel:{SHANGHAI.hotline}"
    await shot(page, tmp_path, "en-02-signed-in-other-city")

    await page.click("#smellgas-report")
    await expect(page.locator(".toast").last).to_have_text("Reported: an emergency crew is being sent.")
    [order] = await emergencies(committed_sessions, household.customer.id)
    assert (order.kind, order.address_id, order.city_id) == ("emergency_leak", parents.id, "shanghai")
    card = page.locator(f"#safety-{order.id}")
    await expect(card.locator("h2")).to_have_text("Suspected gas leak: act now")
    await expect(card.locator(".gas-steps li")).to_have_text(EN_STEP_TEXTS)
    await expect(card.locator("a.gas-call")).to_have_text([f"Gas emergency {SHANGHAI.hotline}", "Fire service 119"])
    await expect(page.locator("#sla-clock")).to_contain_text("Emergency crew promised within")
    await page.evaluate("window.scrollTo(0, 0)")
    await shot(page, tmp_path, "en-03-emergency-order-page")
