"""Appointments in the browser, on 360 px phones in zh-CN and English: the customer books a repair
for tomorrow from the windows on offer (the one he picked first fills meanwhile, and the app says
so in his words and offers the rest), then moves it to a later window; the day is planned, and the
technician's day shows his two visits in order, listed with their windows and addresses and drawn
as numbered stops on the map. Then an emergency arrives: he accepts a gas leak next to his first
stop, the day is re-planned and his open day view redraws itself with the later arrival; later
still, the first visit can no longer be kept, moves, and its customer's app says so. The
screenshots land in test-artifacts/e2e/ and docs/screenshots/."""

import shutil
import uuid
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import expect
from sqlmodel import select

from dispatch import service as dispatch
from dispatch.models import Notification, Order
from kit import after_commit
from kit.db import database_now
from scheduling import planner, replan
from scheduling import service as scheduling
from scheduling.schemas import ScheduleIn, WeeklyShiftIn
from tests.e2e.support import CENTER, PHONE, ROOT, assert_accessible, demo_station, shot, sign_in
from tests.factories import make_customer, make_technician

SCREENSHOTS = ROOT / "docs" / "screenshots"
TZ = ZoneInfo("Asia/Shanghai")  # the demo city's zone, and the phones'
PHONE_OPTIONS = {"viewport": PHONE, "is_mobile": True, "has_touch": True, "timezone_id": "Asia/Shanghai"}
NEIGHBOUR_LINE = "西湖大道 8 号 3 单元"


def tomorrow():  # noqa: ANN201
    return datetime.now(timezone.utc).astimezone(TZ).date() + timedelta(days=1)


def away_zone() -> str:
    """A phone's zone where it is another day than in the city now (one of these two always is)."""
    now = datetime.now(timezone.utc)
    return next(z for z in ("Etc/GMT+12", "Pacific/Kiritimati")
                if now.astimezone(ZoneInfo(z)).date() != now.astimezone(TZ).date())


def clock(at: datetime) -> str:
    return f"{at.astimezone(TZ):%H:%M}"


@pytest.fixture
async def people(committed_sessions):  # noqa: ANN001, ANN201
    """A technician of the demo station certified for repairs, working 08:00-18:00 every day; the
    customer at the centre, and a neighbour about 1 km east who books through the service."""
    async with committed_sessions() as session:
        station = await demo_station(session)
        technician = await make_technician(session, station=station)
        week = ScheduleIn(weekly=[WeeklyShiftIn(weekday=d, start=time(8), end=time(18)) for d in range(7)])
        await scheduling.put_schedule(session, technician.technician.id, week, datetime.now(timezone.utc))
        customer = await make_customer(session, *CENTER)
        neighbour = await make_customer(session, CENTER[0] + 0.01, CENTER[1])
        neighbour.address.line = NEIGHBOUR_LINE
        session.add(neighbour.address)
        await session.commit()
    return {"customer": customer.account.email, "customer_line": customer.address.line,
            "technician": technician.account.email, "technician_id": technician.technician.id, "neighbour": neighbour}


async def test_a_booked_visit_from_the_customers_phone_to_the_technicians_day(
    api_worker, people, committed_sessions, new_context, offline, artifacts,  # noqa: ANN001
) -> None:
    base = api_worker()
    day = tomorrow()

    customer = await (await new_context(**PHONE_OPTIONS)).new_page()
    await sign_in(customer, base, "customer", people["customer"])
    form = customer.locator("#booking-form")
    await expect(form.locator("h2")).to_have_text("预约上门")
    # Emergencies and urgent work are not bookable: they are not offered.
    assert "emergency_leak" not in await form.locator("#booking-kind option").evaluate_all("os => os.map((o) => o.value)")
    await customer.select_option("#booking-kind", "repair")
    await customer.select_option("#booking-day", day.isoformat())
    slots = customer.locator("#booking-slots button")
    await expect(slots.first).to_contain_text("08:00–10:00")
    await expect(slots).to_have_count(5)  # 08, 10, 12, 14 and 16 o'clock, inside his shift
    await slots.first.click()
    await expect(slots.first).to_have_attribute("aria-pressed", "true")
    await form.scroll_into_view_if_needed()
    await shot(customer, artifacts, "booking-01-customer-windows")

    # Meanwhile the neighbour takes the technician's only room at 08:00.
    neighbour = people["neighbour"]
    async with committed_sessions() as session:
        taken = await scheduling.book(
            session, customer_id=neighbour.customer.id, address_id=neighbour.address.id, kind="repair",
            window_start=datetime.combine(day, time(8), TZ), actor=dispatch.Actor("customer", str(neighbour.account.id)),
            now=await database_now(session))
        await session.commit()

    await customer.click("#book-visit")
    await expect(form.locator(".error")).to_have_text("该时段刚刚约满，请选择其他时段")
    await expect(slots.first).to_contain_text("10:00–12:00")  # the windows left, offered again
    await slots.first.click()
    await customer.click("#book-visit")
    await expect(customer.locator("#order-status-pill")).to_have_text("已预约")
    await expect(customer.locator("#order-window")).to_contain_text("预约时段")
    await expect(customer.locator("#order-window")).to_contain_text("10:00–12:00")
    await expect(customer.locator("#identity")).to_contain_text("预约已确认")
    order_id = uuid.UUID(customer.url.rsplit("/", 1)[1])
    await expect(customer.locator("#cancel-fee-now")).to_have_text("现在取消免费。")
    await shot(customer, artifacts, "booking-02-customer-order")

    await customer.click("#move-booking")
    dialog = customer.locator("#move-dialog")
    await expect(dialog.locator("#move-day")).to_have_value(day.isoformat())  # opens on the booked day
    await dialog.locator("#move-slots button", has_text="12:00–14:00").click()
    await assert_accessible(customer, "booking move dialog")
    await dialog.locator("#move-confirm").click()
    await expect(dialog).to_have_count(0)
    await expect(customer.locator("#order-window")).to_contain_text("12:00–14:00")
    await expect(customer.locator("#order-status-pill")).to_have_text("已预约")
    await customer.click("a[href='#']")
    listed = customer.locator(f"li:has(a[href='#order/{order_id}'])")
    await expect(listed).to_contain_text("已预约")
    await expect(listed.locator(".order-window")).to_contain_text("12:00–14:00")
    # Away from home, on a phone where it is another day: the days offered are the city's, and the
    # visit reads on the city's clock and moves from its own day.
    travelling = await (await new_context(**{**PHONE_OPTIONS, "timezone_id": away_zone()})).new_page()
    await sign_in(travelling, base, "customer", people["customer"])
    await expect(travelling.locator("#booking-day option").first).to_have_attribute("value", (day - timedelta(days=1)).isoformat())
    await travelling.goto(f"{base}/app/customer/#order/{order_id}")
    await expect(travelling.locator("#order-window")).to_contain_text("12:00–14:00")
    await travelling.click("#move-booking")
    await expect(travelling.locator("#move-day")).to_have_value(day.isoformat())

    async with committed_sessions() as session:
        order = await session.get(Order, order_id)
        assert (order.status, order.window_start) == ("scheduled", datetime.combine(day, time(12), TZ))
        planned = await planner.plan_day(session, city_id=order.city_id, day=day, now=await database_now(session),
                                         time_limit=1.0)
        await session.commit()
    assert planned.unplanned == []
    assert [s.order_id for s in sorted(planned.stops, key=lambda s: s.sequence)] == [taken.id, order_id]

    # His phone is set to a zone where it is another day: his day is still the city's.
    phone = await new_context(**{**PHONE_OPTIONS, "timezone_id": away_zone()})
    await phone.grant_permissions(["geolocation"], origin=base)
    await phone.set_geolocation({"longitude": CENTER[0], "latitude": CENTER[1], "accuracy": 8})
    tech = await phone.new_page()
    await sign_in(tech, base, "technician", people["technician"])
    await expect(tech.locator("#my-day-h")).to_have_text("今日行程")
    await expect(tech.locator("#day-summary")).to_have_text("这一天还没有排定的预约上门。")
    await expect(tech.locator("#day-map")).to_be_hidden()
    await tech.click("#day-next")
    await expect(tech.locator("#day-date")).to_have_value(day.isoformat())
    await expect(tech.locator("#my-day-h")).to_have_text("行程安排")
    stops = tech.locator("#day-stops > li")
    await expect(stops).to_have_count(2)
    await expect(stops.nth(0)).to_contain_text("08:00–10:00")
    await expect(stops.nth(0)).to_contain_text(NEIGHBOUR_LINE)
    await expect(stops.nth(0).locator(".stop-seq")).to_have_text("1")
    await expect(stops.nth(1)).to_contain_text("12:00–14:00")
    await expect(stops.nth(1)).to_contain_text(people["customer_line"])
    await expect(stops.nth(1).locator(".stop-seq")).to_have_text("2")
    await expect(stops.nth(1)).to_contain_text("燃气维修")
    await expect(stops.nth(1).locator(".stop-arrival")).to_contain_text("计划 12:")
    day_map = tech.locator("#day-map")
    await expect(day_map).to_be_visible()
    await expect(day_map.locator(".stop-marker")).to_have_text(["1", "2"])
    await expect(day_map.locator("path.leaflet-interactive")).to_have_count(1)  # the line joining them
    await tech.locator("#my-day").scroll_into_view_if_needed()
    await shot(tech, artifacts, "booking-03-technician-day")

    await tech.select_option("#lang-select", "en")
    await expect(tech.locator("#my-day-h")).to_have_text("My schedule")
    await expect(stops.nth(1).locator(".stop-arrival")).to_contain_text("Planned arrival 12:")
    await expect(stops.nth(1)).to_contain_text("Gas repair")
    await expect(day_map.locator(".stop-marker")).to_have_text(["1", "2"])
    await shot(tech, artifacts, "booking-04-technician-day-en")

    await customer.click(f"a[href='#order/{order_id}']")
    await customer.select_option("#lang-select", "en")
    await expect(customer.locator("#order-status-pill")).to_have_text("Booked")
    await expect(customer.locator("#order-window")).to_contain_text("Arrival window")
    await expect(customer.locator("#move-booking")).to_have_text("Reschedule")
    await shot(customer, artifacts, "booking-05-customer-order-en")

    # An emergency arrives: a gas leak next door to his first stop, given to him by operations and
    # accepted. Its events stay in the outbox (this API process runs no worker), so neither the
    # job's own push nor the re-plan it would start on the real clock happens: only the plan's
    # push below can redraw his day.
    first = stops.nth(0).locator(".stop-arrival")
    await tech.select_option("#lang-select", "zh-CN")
    await expect(first).to_have_text(f"计划 {clock(planned.stops[0].planned_arrival_at)} 到达")
    async with committed_sessions() as session:
        caller = await make_customer(session, CENTER[0] + 0.011, CENTER[1])
        leak = await dispatch.create_order(session, customer_id=caller.customer.id, address_id=caller.address.id,
                                           kind="emergency_leak", actor=dispatch.Actor("customer", str(caller.account.id)))
        ops = dispatch.Actor("admin", "e2e")
        await dispatch.transition(session, leak.id, "start_matching", ops)
        await dispatch.transition(session, leak.id, "offer", ops)
        await dispatch.transition(session, leak.id, "accept", ops, set_values={"technician_id": people["technician_id"]})
        await session.commit()

    # The day is re-planned on a synthetic clock, "as of tomorrow 07:30": a plan counts the jobs in
    # hand only when it plans its own today, so the real clock (still today) cannot make tomorrow
    # busy. As of 07:30 the leak's hour of work keeps him there until 08:30.
    async with committed_sessions() as session:
        replanned = await replan.replan_day(session, order.city_id, day, now=datetime.combine(day, time(7, 30), TZ),
                                            time_limit=1.0)
        await session.commit()
        await after_commit.run(session)  # plan_changed, to his socket
    assert replanned.unplanned == []
    ordered = sorted(replanned.stops, key=lambda s: s.sequence)
    assert [s.order_id for s in ordered] == [taken.id, order_id]
    assert ordered[0].planned_arrival_at >= datetime.combine(day, time(8, 30), TZ) > planned.stops[0].planned_arrival_at
    await expect(first).to_have_text(f"计划 {clock(ordered[0].planned_arrival_at)} 到达")  # no reload: by itself
    await expect(stops.nth(0)).to_contain_text(NEIGHBOUR_LINE)
    await expect(stops.nth(1)).to_contain_text(people["customer_line"])
    await expect(stops.nth(1).locator(".stop-arrival")).to_have_text(f"计划 {clock(ordered[1].planned_arrival_at)} 到达")
    await expect(day_map.locator(".stop-marker")).to_have_text(["1", "2"])
    await tech.locator("#my-day").scroll_into_view_if_needed()
    await shot(tech, artifacts, "technician-day-replanned")

    # Later, as of 09:30 on the same clock, the leak still holds him until 10:30: the neighbour's
    # 08:00-10:00 visit cannot be kept, moves to the next window with room, and the neighbour's
    # app says so, in his time, when he opens it, and marks the notice read.
    async with committed_sessions() as session:
        later = await replan.replan_day(session, order.city_id, day, now=datetime.combine(day, time(9, 30), TZ),
                                        time_limit=1.0)
        await session.commit()
        await after_commit.run(session)
        moved = await session.get(Order, taken.id)
    assert later.unplanned == [] and taken.id in {s.order_id for s in later.stops}  # planned again in its new window
    assert (moved.status, moved.window_start > datetime.combine(day, time(8), TZ)) == ("scheduled", True)
    new_window = f"{clock(moved.window_start)}–{clock(moved.window_end)}"
    await expect(stops.filter(has_text=NEIGHBOUR_LINE)).to_contain_text(new_window)  # his day, by itself
    told = await (await new_context(**PHONE_OPTIONS)).new_page()
    await sign_in(told, base, "customer", neighbour.account.email)
    toast = told.locator(".toast", has_text="您的预约已调整为")
    await expect(toast).to_contain_text(f"{day.month}月{day.day}日")
    await expect(toast).to_contain_text(new_window)
    await expect(told.locator(f"li:has(a[href='#order/{taken.id}']) .order-window")).to_contain_text(new_window)
    await shot(told, artifacts, "booking-06-customer-moved")
    async with committed_sessions() as session:
        notice = (await session.exec(select(Notification).where(
            Notification.account_id == neighbour.account.id, Notification.kind == "booking_moved"))).one()
    assert notice.read_at is not None

    assert offline.blocked == [], f"pages reached outside the machine: {offline.blocked}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, source in (("customer-booking", "booking-01-customer-windows"), ("technician-day", "booking-03-technician-day"),
                         ("technician-day-replanned", "technician-day-replanned")):
        shutil.copyfile(artifacts / f"{source}.png", SCREENSHOTS / f"{name}.png")
