"""Address entry with a pin, on two 360 px phones in zh-CN then English: the customer types a
structured Chinese address and drags the pin to his building; the map draws the deployment's
tiles (a local tile server here) and falls back to the plain vector map when they fail. A
technician's offer names only the district and street; once he accepts, his job card shows the
whole address, the customer's name, a call button that goes through the relay (the default logs
it, numbers masked, and neither phone sees a number) and routes in AMap, Baidu, Apple and Google
Maps to the pin. The screenshots land in test-artifacts/e2e/ and docs/screenshots/."""

import io
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image, ImageDraw
from playwright.async_api import expect

from dispatch.models import Address
from tests.e2e.support import CENTER, PHONE, ROOT, demo_station, shot, sign_in
from tests.factories import make_customer, make_technician

SCREENSHOTS = ROOT / "docs" / "screenshots"
PHONE_OPTIONS = {"viewport": PHONE, "is_mobile": True, "has_touch": True, "timezone_id": "Asia/Shanghai"}
FAST = {"GASDISPATCH_EMBEDDED_WORKER": "true", "GASDISPATCH_BATCH_WINDOW_S": "0.3"}
PARTS = {"province": "浙江省", "city": "杭州市", "district": "西湖区", "street": "文三路 90 号", "community": "翠苑一区",
         "building": "3", "unit": "2", "room": "501"}
LINE = "浙江省杭州市西湖区 文三路 90 号 翠苑一区 3幢 2单元 501室"


def _tile() -> bytes:
    """A light street-map-like tile: enough to tell tiles from the plain grid in a screenshot."""
    image = Image.new("RGB", (256, 256), "#f2efe9")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 118, 256, 138), fill="#ffffff", outline="#d6d0c4")
    draw.rectangle((118, 0, 138, 256), fill="#fde7a5", outline="#e0c068")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


class TileServer:
    """Serves one tile for every {z}/{x}/{y}, or 404s while `failing` (a dead tile server)."""

    def __init__(self) -> None:
        tile, server = _tile(), self
        self.failing = False
        self.served = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if server.failing:
                    self.send_error(404)
                    return
                server.served += 1
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(tile)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{{z}}/{{x}}/{{y}}.png"


@pytest.fixture
def tiles():  # noqa: ANN201
    server = TileServer()
    yield server
    server.httpd.shutdown()


@pytest.fixture
async def people(committed_sessions):  # noqa: ANN001, ANN201
    async with committed_sessions() as session:
        station = await demo_station(session)
        customer = await make_customer(session, *CENTER)
        technician = await make_technician(session, station=station)
        await session.commit()
    return {"customer": customer.account.email, "customer_id": customer.customer.id,
            "technician": technician.account.email}


async def drag_pin(page, dx: int, dy: int) -> None:  # noqa: ANN001
    box = await page.locator("#addr-map .address-pin").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await page.mouse.move(x, y)
    await page.mouse.down()
    await page.mouse.move(x + dx / 2, y + dy / 2, steps=5)
    await page.mouse.move(x + dx, y + dy, steps=5)
    await page.mouse.up()


async def test_address_entry_with_a_pin_reaches_the_technician_in_full_after_acceptance(
    api_worker, people, committed_sessions, tiles, new_context, offline, artifacts, tmp_path: Path,  # noqa: ANN001
) -> None:
    base = api_worker(**FAST, GASDISPATCH_MAP_TILE_URL=tiles.url, GASDISPATCH_MAP_TILE_ATTRIBUTION="© test tiles")
    at = (CENTER[0] + 0.0005, CENTER[1])
    phone = await new_context(**PHONE_OPTIONS)
    await phone.grant_permissions(["geolocation"], origin=base)
    await phone.set_geolocation({"longitude": at[0], "latitude": at[1], "accuracy": 8})
    tech = await phone.new_page()
    await sign_in(tech, base, "technician", people["technician"])
    await tech.click("#toggle-online")
    await expect(tech.locator("#tech-status")).to_have_text("在线")

    # The customer types the address part by part and drags the pin onto his building.
    customer = await (await new_context(**PHONE_OPTIONS)).new_page()
    await sign_in(customer, base, "customer", people["customer"])
    await expect(customer.locator("#addr-map")).to_have_attribute("data-tiles", "on")
    await expect(customer.locator("#addr-map img.leaflet-tile-loaded").first).to_be_visible()
    await customer.fill("#addr-label", "新家")
    for name, value in PARTS.items():
        await customer.fill(f"#addr-{name}", value)
    pinned = customer.locator("#addr-pin-at")
    await expect(pinned).to_contain_text("图钉位置")
    before = await pinned.inner_text()
    await customer.locator("#addr-map").scroll_into_view_if_needed()
    await drag_pin(customer, 60, -40)
    await expect(pinned).not_to_have_text(before)
    await shot(customer, artifacts, "address-01-customer-form")
    await customer.click("#addr-save")
    await expect(customer.get_by_role("status").filter(has_text="地址已保存")).to_be_visible()

    async with committed_sessions() as session:
        from sqlmodel import select

        saved = (await session.exec(select(Address).where(Address.customer_id == people["customer_id"],
                                                          Address.label == "新家"))).one()
    assert saved.line == LINE and {name: getattr(saved, name) for name in PARTS} == PARTS
    from kit.geo import lonlat

    lon, lat = lonlat(saved.location)
    await expect(pinned).to_have_text(f"图钉位置 {lat:.6f}, {lon:.6f}")  # the new address's pin where it was dropped
    assert lon > CENTER[0] and lat > CENTER[1]  # dragged right and up from the old address
    assert (lon - CENTER[0]) * 96_000 > 25  # some tens of metres at zoom 17, not a click in place

    # The order goes out: the offer names the district and street, not the door.
    await expect(customer.locator("#address-select")).to_have_value(str(saved.id))
    await customer.select_option("#order-kind", "repair")
    await customer.click("#place-order")
    area = tech.locator(".offer-area")
    await expect(area).to_have_text("大致位置: 西湖区 · 文三路 90 号")
    await shot(tech, artifacts, "address-02-technician-offer")
    await tech.locator("[id^=accept-]").click()
    await expect(customer.locator("#order-status-pill")).to_have_text("已接单")

    # Accepted: the whole address, the customer's name, a call that reveals no number, routes.
    await expect(tech.locator("#job-address")).to_have_text(f"地址: {LINE}")
    await expect(tech.locator("#job-customer")).to_have_text("用户: 李雷")
    amap = parse_qs(urlsplit(await tech.locator("#nav-amap").get_attribute("href")).query)
    assert amap["to"] == [f"{lon:.6f},{lat:.6f},{LINE}"] and amap["coordinate"] == ["wgs84"]
    baidu = parse_qs(urlsplit(await tech.locator("#nav-baidu").get_attribute("href")).query)
    assert baidu["location"] == [f"{lat:.6f},{lon:.6f}"] and baidu["coord_type"] == ["wgs84"]
    assert parse_qs(urlsplit(await tech.locator("#nav-apple").get_attribute("href")).query)["daddr"] == [f"{lat:.6f},{lon:.6f}"]
    assert "destination=" in await tech.locator("#nav-google").get_attribute("href")
    await expect(tech.locator("#nav-google")).to_have_text("谷歌地图")
    await tech.click("#job-contact")
    called = tech.get_by_role("status").filter(has_text="正在为您接通")
    await expect(called).to_be_visible()
    assert "139" not in await tech.locator("[data-order]").inner_text()  # the customer's number is nowhere
    log = (tmp_path / f"worker-{urlsplit(base).port}.log").read_text()
    assert "contact.call_requested" in log and "*******0000" in log and "13900000000" not in log
    await expect(called).to_have_count(0)  # the toast gone, so the screenshot shows the card
    await shot(tech, artifacts, "address-03-technician-job")

    # In English: the same screens in the reader's words.
    await tech.select_option("#lang-select", "en")
    await expect(tech.locator("#job-address")).to_have_text(f"Address: {LINE}")
    await expect(tech.locator("#job-customer")).to_have_text("Customer: 李雷")
    await expect(tech.locator("#nav-amap")).to_have_text("AMap")
    await shot(tech, artifacts, "address-04-technician-job-english")
    await customer.goto(f"{base}/app/customer/#")
    await customer.select_option("#lang-select", "en")
    await expect(customer.locator("label[for=addr-street]")).to_have_text("Street and number")
    await expect(pinned).to_contain_text("Pin at")
    await customer.fill("#addr-label", "Office")
    for name, value in {"province": "浙江省", "city": "杭州市", "district": "西湖区", "street": "文二路 1 号",
                        "unit": "1"}.items():
        await customer.fill(f"#addr-{name}", value)
    await customer.click("#addr-save")  # a unit without its building: refused, naming the building
    await expect(customer.locator("#address-form .error")).to_have_text("Please fill in or check “Building” in the address")
    await shot(customer, artifacts, "address-05-customer-form-english")

    # The tile server dies: the map falls back to the plain vector map, and says so.
    tiles.failing = True
    await customer.reload()
    await expect(customer.locator("#addr-map")).to_have_attribute("data-tiles", "fallback")
    await expect(customer.locator("#addr-map .map-fallback")).to_have_text("Street map unavailable: showing the plain map")
    await expect(customer.locator("#addr-map img.leaflet-tile")).to_have_count(0)
    await expect(customer.locator("#addr-map .address-pin")).to_be_visible()  # the pin still works
    await shot(customer, artifacts, "address-06-customer-tiles-fallback")

    assert offline.blocked == [], f"pages reached outside the machine: {offline.blocked}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, source in (("customer-address", "address-01-customer-form"),
                         ("customer-address-en", "address-05-customer-form-english"),
                         ("technician-offer-area", "address-02-technician-offer"),
                         ("technician-job-address", "address-03-technician-job"),
                         ("technician-job-address-en", "address-04-technician-job-english"),
                         ("customer-address-tiles-fallback", "address-06-customer-tiles-fallback")):
        shutil.copyfile(artifacts / f"{source}.png", SCREENSHOTS / f"{name}.png")


async def test_on_gcj02_tiles_the_pin_is_drawn_shifted_and_saved_in_wgs84_without_drift(
    api_worker, people, committed_sessions, tiles, new_context, offline,  # noqa: ANN001
) -> None:
    """AMap's tiles are GCJ-02: a WGS-84 point is drawn some 500 m off unless shifted; the pin is
    shifted for display and back when saved, so saving it where it stands keeps the household's point."""
    from dispatch.addresses import wgs84_to_gcj02
    from kit.geo import lonlat

    base = api_worker(GASDISPATCH_MAP_TILE_URL=tiles.url, GASDISPATCH_MAP_TILE_DATUM="gcj02")
    customer = await (await new_context(**PHONE_OPTIONS)).new_page()
    await sign_in(customer, base, "customer", people["customer"])
    await expect(customer.locator("#addr-map")).to_have_attribute("data-tiles", "on")
    drawn, back = await customer.evaluate("""async ([lon, lat]) => {
        const map = await import("/app/shared/map.js");
        const drawn = map.latLng({ type: "Point", coordinates: [lon, lat] });
        return [drawn, map.toPoint(window.L.latLng(drawn)).coordinates];
    }""", list(CENTER))
    g_lon, g_lat = wgs84_to_gcj02(*CENTER)
    assert abs(drawn[0] - g_lat) < 1e-9 and abs(drawn[1] - g_lon) < 1e-9 and abs(drawn[1] - CENTER[0]) > 0.003
    assert abs(back[0] - CENTER[0]) < 1e-7 and abs(back[1] - CENTER[1]) < 1e-7  # within a centimetre
    await expect(customer.locator("#addr-pin-at")).to_have_text(f"图钉位置 {CENTER[1]:.6f}, {CENTER[0]:.6f}")

    # Dragged away and back to the same spot: the pin reads the map's point and unshifts it.
    await customer.locator("#addr-map").scroll_into_view_if_needed()
    await drag_pin(customer, 50, 30)
    await expect(customer.locator("#addr-pin-at")).not_to_have_text(f"图钉位置 {CENTER[1]:.6f}, {CENTER[0]:.6f}")
    await drag_pin(customer, -50, -30)
    await customer.fill("#addr-label", "隔壁")
    for name, value in PARTS.items():
        await customer.fill(f"#addr-{name}", value)
    await customer.click("#addr-save")
    await expect(customer.get_by_role("status").filter(has_text="地址已保存")).to_be_visible()
    async with committed_sessions() as session:
        from sqlmodel import select

        saved = (await session.exec(select(Address).where(Address.customer_id == people["customer_id"],
                                                          Address.label == "隔壁"))).one()
    lon, lat = lonlat(saved.location)
    assert abs(lon - CENTER[0]) < 2e-5 and abs(lat - CENTER[1]) < 2e-5  # within a pixel (~1 m), not ~500 m off
    assert offline.blocked == []
