"""Names stored with markup (written straight into the database, as names saved before the API
restricted them would be) show as plain text in the map tooltips of the ops console and of the
customer's nearby map: no element is injected, no script runs, the page does not navigate."""

import re
from datetime import datetime, timezone

import httpx
import pytest
from playwright.async_api import Page, expect
from sqlalchemy import update

from dispatch.models import Address, ServiceStation, Technician
from dispatch.stations import create_station
from tests.e2e.support import CENTER, DESKTOP, square
from tests.factories import PASSWORD, make_customer, make_staff, make_technician

TECH_AT = (120.157, 30.274)  # about 190 m east; nearby positions are rounded to 3 decimals anyway
# The reported attack: a refresh to another page, plus elements and handlers that would betray markup.
TECH_NAME = '<meta http-equiv="refresh" content="0;url=/v1/health/live"><i class="injected">张师傅</i>'
STATION_NAME = '<img src=x onerror="window.pwned=true"><i class="injected">西湖站</i>'
ADDRESS_LABEL = '<img src=x onerror="window.pwned=true">家'
TECHNICIAN_GREEN, STATION_BLUE, ADDRESS_RED = "#146c2e", "#0b5cad", "#b42318"  # api/web/shared/map.js COLORS
INJECTED = 'meta[http-equiv], .injected, img[src="x"]'


@pytest.fixture
async def people(committed_sessions):  # noqa: ANN001, ANN201
    async with committed_sessions() as session:
        # A small area so the whole polygon, with a corner free of dots, fits in the customer's map.
        station = await create_station(session, name="西湖社区服务站", city="demo", lon=CENTER[0], lat=CENTER[1],
                                       service_area=square(*CENTER, 0.003), daily_capacity=40)
        customer = await make_customer(session, *CENTER)
        technician = await make_technician(session, station=station)
        admin, _ = await make_staff(session, "admin")
        await session.exec(update(ServiceStation).where(ServiceStation.id == station.id).values(name=STATION_NAME))
        await session.exec(update(Technician).where(Technician.id == technician.technician.id).values(name=TECH_NAME))
        await session.exec(update(Address).where(Address.id == customer.address.id).values(label=ADDRESS_LABEL))
        await session.commit()
    return {"customer": customer.account.email, "admin": admin.email, "technician_headers": technician.headers}


def put_technician_on_duty(base: str, headers: dict[str, str]) -> None:
    online = httpx.post(f"{base}/v1/technicians/me/online", headers=headers)
    assert online.status_code == 200, online.text
    fix = {"position": {"type": "Point", "coordinates": list(TECH_AT)}, "ts": datetime.now(timezone.utc).isoformat()}
    located = httpx.post(f"{base}/v1/technicians/me/location", headers=headers, json=fix)
    assert located.status_code == 202 and located.json()["outcome"] == "accepted", located.text


async def signed_in(context, base: str, app: str, email: str) -> tuple[Page, list[str]]:  # noqa: ANN001
    """The signed-in page and the list of the URLs its main frame navigates to from then on."""
    page = await context.new_page()
    await page.goto(f"{base}/app/{app}/")
    await page.fill("#login-email", email)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await expect(page.locator("#sign-out")).to_be_visible()
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    return page, navigations


async def hover_shows_text(page: Page, target, text: str, **hover) -> None:  # noqa: ANN001, ANN003
    await target.hover(**hover)
    await expect(target).to_have_attribute("aria-describedby", re.compile(r"^leaflet-tooltip-\d+$"))
    tooltip = page.locator(f"#{await target.get_attribute('aria-describedby')}")  # the tooltip Leaflet opened
    await expect(tooltip).to_have_text(text)
    assert await tooltip.evaluate("el => el.children.length") == 0, await tooltip.inner_html()
    await page.mouse.move(0, 0)


async def assert_untouched(page: Page, url: str, navigations: list[str]) -> None:
    await page.wait_for_timeout(500)  # a zero-delay refresh or an onerror handler has had time to act
    assert await page.locator(INJECTED).count() == 0
    assert await page.evaluate("window.pwned === undefined")
    assert navigations == [] and page.url == url, navigations


async def test_names_stored_with_markup_show_as_text_in_map_tooltips(
    api_worker, people, new_context, offline,  # noqa: ANN001
) -> None:
    base = api_worker()
    put_technician_on_duty(base, people["technician_headers"])
    desk = await new_context(viewport=DESKTOP)

    ops, ops_navigations = await signed_in(desk, base, "ops", people["admin"])
    ops_url = ops.url
    ops_map = ops.locator("#ops-map")
    await hover_shows_text(ops, ops_map.locator(f"path.leaflet-interactive[fill='{TECHNICIAN_GREEN}']"),
                           f"{TECH_NAME} · 在线")
    await hover_shows_text(ops, ops_map.locator(f"path.leaflet-interactive[stroke='{STATION_BLUE}']"),
                           STATION_NAME, position={"x": 3, "y": 3})
    await assert_untouched(ops, ops_url, ops_navigations)

    customer, customer_navigations = await signed_in(desk, base, "customer", people["customer"])
    customer_url = customer.url
    await expect(customer.locator("#nearby-list strong")).to_have_text(TECH_NAME)
    home_map = customer.locator("#home-map")
    await hover_shows_text(customer, home_map.locator(f"path.leaflet-interactive[fill='{TECHNICIAN_GREEN}']"), TECH_NAME)
    await hover_shows_text(customer, home_map.locator(f"path.leaflet-interactive[fill='{ADDRESS_RED}']"), ADDRESS_LABEL)
    await hover_shows_text(customer, home_map.locator(f"path.leaflet-interactive[stroke='{STATION_BLUE}']"),
                           STATION_NAME, position={"x": 5, "y": 5})
    await assert_untouched(customer, customer_url, customer_navigations)

    assert offline.blocked == [], f"pages reached outside the machine: {offline.blocked}"


async def test_a_tooltip_open_on_the_ops_map_stays_open_when_an_order_redraws_the_map(
    api_worker, people, committed_sessions, new_context, offline,  # noqa: ANN001
) -> None:
    async with committed_sessions() as session:  # a customer ~1 km west: his order's dot is far from the hover
        far = await make_customer(session, CENTER[0] - 0.01, CENTER[1])
        await session.commit()
    base = api_worker(GASDISPATCH_EMBEDDED_WORKER="true", GASDISPATCH_BATCH_WINDOW_S="0.3")  # status pushes
    put_technician_on_duty(base, people["technician_headers"])
    ops, _ = await signed_in(await new_context(viewport=DESKTOP), base, "ops", people["admin"])
    await expect(ops.locator("#ops-connection.ok")).to_be_visible()  # its first refresh has drawn the map
    ops_map = ops.locator("#ops-map")
    technician = ops_map.locator(f"path.leaflet-interactive[fill='{TECHNICIAN_GREEN}']")
    await technician.hover()
    await expect(technician).to_have_attribute("aria-describedby", re.compile(r"^leaflet-tooltip-\d+$"))
    tooltip = ops.locator(f"#{await technician.get_attribute('aria-describedby')}")
    await expect(tooltip).to_have_text(f"{TECH_NAME} · 在线")

    placed = httpx.post(f"{base}/v1/orders", headers=far.headers,
                        json={"kind": "repair", "address_id": str(far.address.id)})
    assert placed.status_code == 201, placed.text
    # The order comes over the ops socket and the map is drawn again with its dot...
    await expect(ops_map.locator("path.leaflet-interactive[stroke='#fff']")).to_have_count(2)
    # ...and the operator's tooltip is still the one open, on the same marker.
    await expect(tooltip).to_be_visible()
    await expect(tooltip).to_have_text(f"{TECH_NAME} · 在线")
    assert await technician.get_attribute("aria-describedby") == await tooltip.get_attribute("id")
