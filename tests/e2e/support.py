"""Shared by the browser tests: viewports, and the accessibility basics checked in the page
(labels, contrast of the main buttons, no horizontal scroll)."""

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 900}

# Runs in the page: every visible form control has an accessible name from a <label>,
# aria-label or aria-labelledby; main buttons (.primary, .ok, .danger) reach 4.5:1.
_AUDIT = """
() => {
  const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const unlabelled = [...document.querySelectorAll("input, select, textarea")]
    .filter((el) => el.type !== "hidden" && visible(el))
    .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby"))
    .map((el) => el.outerHTML.slice(0, 120));
  const rgb = (text) => text.match(/[\\d.]+/g).slice(0, 4).map(Number);
  const luminance = ([r, g, b]) => {
    const c = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const buttons = [...document.querySelectorAll("button.primary, button.ok, button.danger, a.button.primary")]
    .filter(visible).map((el) => {
      const style = getComputedStyle(el);
      const [l1, l2] = [luminance(rgb(style.color)), luminance(rgb(style.backgroundColor))].sort((a, b) => b - a);
      return { button: el.textContent.trim(), ratio: (l1 + 0.05) / (l2 + 0.05) };
    });
  const root = document.documentElement;
  return { unlabelled, buttons, scrollWidth: root.scrollWidth, clientWidth: root.clientWidth };
}
"""


# The demo city's centre (Hangzhou, West Lake), where the browser tests put their people.
CENTER = (120.155, 30.274)


def square(lon: float, lat: float, half: float) -> dict:
    ring = [[lon - half, lat - half], [lon + half, lat - half], [lon + half, lat + half], [lon - half, lat + half],
            [lon - half, lat - half]]
    return {"type": "Polygon", "coordinates": [ring]}


async def assert_accessible(page: Any, where: str) -> None:
    report = await page.evaluate(_AUDIT)
    assert not report["unlabelled"], f"{where}: controls without a label: {report['unlabelled']}"
    low = [b for b in report["buttons"] if b["ratio"] < 4.5]
    assert not low, f"{where}: main buttons under 4.5:1 contrast: {low}"
    assert report["scrollWidth"] <= report["clientWidth"], f"{where}: scrolls sideways ({report['scrollWidth']} > {report['clientWidth']} px)"


async def sign_in(page: Any, base: str, app: str, email: str) -> None:
    from playwright.async_api import expect

    from tests.factories import PASSWORD

    await page.goto(f"{base}/app/{app}/")
    await page.fill("#login-email", email)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await expect(page.locator("#sign-out")).to_be_visible()


async def shot(page: Any, folder: Path, name: str) -> None:
    """An accessibility check, then the whole page from the top (or the sticky header is captured
    where the page happened to be scrolled)."""
    await assert_accessible(page, name)
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


async def job_in_service(new_context: Any, base: str, people: dict) -> tuple[Any, Any]:
    """A technician's phone (360 px) and a customer's, after the customer's repair order was
    accepted, travelled to, the door code checked, and the service started: (tech, customer) pages."""
    from playwright.async_api import expect

    at = (CENTER[0] + 0.0002, CENTER[1])
    phone = await new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    await phone.grant_permissions(["geolocation"], origin=base)
    await phone.set_geolocation({"longitude": at[0], "latitude": at[1], "accuracy": 8})
    tech = await phone.new_page()
    await sign_in(tech, base, "technician", people["technician"])
    await tech.click("#toggle-online")
    await expect(tech.locator("#gps")).to_have_attribute("data-sent", f"{at[1]:.5f},{at[0]:.5f}")

    customer = await (await new_context(viewport={"width": 390, "height": 844}, is_mobile=True)).new_page()
    await sign_in(customer, base, "customer", people["customer"])
    await customer.select_option("#order-kind", "repair")
    await customer.click("#place-order")
    await tech.locator("[id^=accept-]").click()
    await expect(customer.locator("#order-status-pill")).to_have_text("已接单")
    await tech.click("#job-depart")
    await expect(customer.locator("#order-status-pill")).to_have_text("上门途中")
    await tech.fill("#door-code-input", (await customer.inner_text("#door-code")).strip())
    await tech.click("#verify-code")
    await expect(tech.locator("#verify-ok")).to_be_visible()
    await tech.click("#job-arrive")
    await tech.click("#job-start")
    return tech, customer


async def demo_station(session: Any) -> Any:
    """The demo city's station the browser tests' people belong to, its area around CENTER."""
    from dispatch.stations import create_station

    return await create_station(session, name="西湖社区服务站", city="demo", lon=CENTER[0], lat=CENTER[1],
                                service_area=square(*CENTER, 0.03), daily_capacity=40)


async def accepted_repair(session: Any, *then: str) -> tuple[Any, Any, Any]:
    """A repair order at the demo station's centre, accepted by a technician of that station,
    then moved on by operations through `then` (e.g. "depart"): (customer, technician, order)."""
    from dispatch import service as dispatch
    from tests.factories import make_customer, make_technician

    station = await demo_station(session)
    customer = await make_customer(session, *CENTER)
    technician = await make_technician(session, station=station)
    order = await dispatch.create_order(session, customer_id=customer.customer.id, address_id=customer.address.id,
                                        kind="repair", actor=dispatch.Actor("customer", str(customer.account.id)))
    ops = dispatch.Actor("admin", "e2e")
    await dispatch.transition(session, order.id, "start_matching", ops)
    await dispatch.transition(session, order.id, "offer", ops)
    await dispatch.transition(session, order.id, "accept", ops, set_values={"technician_id": technician.technician.id})
    for action in then:
        await dispatch.transition(session, order.id, action, ops)
    return customer, technician, order
