"""The operations console acting on a live order in a real browser, in Chinese: ops open the
order, see every technician matching considered and why (picked, ranked lower, lacking the
certification), see who applied for a certification with the training record and the photo of the
certificate he uploaded from his phone, resolve a hazard
with evidence, reassign it to another technician — the first one's phone loses the job, the
second's gets it, both are notified — and an alert arrives as a banner with a beep that stays
until acknowledged. Screenshots land in test-artifacts/e2e."""

import io
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from PIL import Image, ImageDraw
from playwright.async_api import Page, expect
from sqlalchemy import update

from dispatch.alerts import raise_alert
from kit.db import session_scope
from dispatch.field.models import Hazard
from dispatch.models import Certification, Technician, TrainingRecord
from dispatch.service import Actor, create_order, transition
from tests.e2e.support import CENTER, DESKTOP, PHONE, sign_in, shot, demo_station
from tests.factories import make_customer, make_staff, make_technician

FAST = {"GASDISPATCH_EMBEDDED_WORKER": "true", "GASDISPATCH_BATCH_WINDOW_S": "0.3", "GASDISPATCH_MAX_SPEED_KMH": "2000"}
NAMES = {"first": "张师傅", "second": "李师傅", "uncertified": "王师傅"}


@pytest.fixture
async def people(committed_sessions):  # noqa: ANN001, ANN201
    async with committed_sessions() as session:
        station = await demo_station(session)
        customer = await make_customer(session, *CENTER)
        technicians = {
            "first": await make_technician(session, station=station),
            "second": await make_technician(session, station=station),
            "uncertified": await make_technician(session, station=station, kinds=("inspection",)),
        }
        for role, ctx in technicians.items():
            await session.exec(update(Technician).where(Technician.id == ctx.technician.id).values(name=NAMES[role]))
        admin, admin_headers = await make_staff(session, "admin")
        now = datetime.now(timezone.utc)
        applicant = technicians["uncertified"].technician.id
        session.add(Certification(technician_id=applicant, kind="installation", number="AZ-2031-0042",
                                  issuer="市燃气集团培训中心", valid_from=now, valid_until=now + timedelta(days=1000)))
        session.add(TrainingRecord(technician_id=applicant, record_type="exam", kind="installation", held_at=now,
                                   score=91, passed=True, recorded_by=admin.id))
        # An earlier order of the same home, with a hazard the customer has since had repaired.
        earlier = await create_order(session, customer_id=customer.customer.id, address_id=customer.address.id,
                                     kind="inspection", actor=Actor("customer", str(customer.account.id)))
        await transition(session, earlier.id, "cancel", Actor.system(), reason="test history")
        hazard = Hazard(order_id=earlier.id, customer_id=customer.customer.id, address_id=customer.address.id,
                        category="aged_hose", severity="major", description="软管老化开裂", found_at=now,
                        deadline_at=now + timedelta(days=7))
        session.add(hazard)
        await session.commit()
    return customer, technicians, admin, admin_headers, hazard.id


async def phone_online(new_context, base: str, email: str, lon: float) -> Page:  # noqa: ANN001
    context = await new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    await context.grant_permissions(["geolocation"], origin=base)
    await context.set_geolocation({"longitude": lon, "latitude": CENTER[1], "accuracy": 8})
    page = await context.new_page()
    await sign_in(page, base, "technician", email)
    await expect(page.locator("#connection")).to_have_text("已连接")
    await page.click("#toggle-online")
    await expect(page.locator("#tech-status")).to_have_text("在线")
    await expect(page.locator("#gps")).to_have_attribute("data-sent", f"{CENTER[1]:.5f},{lon:.5f}")
    return page


def certificate_png() -> bytes:
    picture = Image.new("RGB", (640, 400), "white")
    ImageDraw.Draw(picture).rectangle((40, 40, 600, 360), outline="darkred", width=8)
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


async def test_ops_see_why_reassign_to_another_technician_and_acknowledge_an_alert(
    api_worker, people, new_context, offline, artifacts,  # noqa: ANN001
) -> None:
    customer, technicians, admin, admin_headers, hazard_id = people
    base = api_worker(**FAST)
    first = await phone_online(new_context, base, technicians["first"].account.email, CENTER[0] + 0.004)
    second = await phone_online(new_context, base, technicians["second"].account.email, CENTER[0] + 0.012)
    async with httpx.AsyncClient(base_url=base) as http:
        uncertified = technicians["uncertified"].headers
        assert (await http.post("/v1/technicians/me/online", headers=uncertified)).status_code == 200
        fix = {"position": {"type": "Point", "coordinates": [CENTER[0] + 0.002, CENTER[1]]},
               "ts": datetime.now(timezone.utc).isoformat()}
        assert (await http.post("/v1/technicians/me/location", headers=uncertified, json=fix)).status_code == 202
        order_id = (await http.post("/v1/orders", headers=customer.headers, json={
            "kind": "repair", "address_id": str(customer.address.id), "description": "热水器打不着火"})).json()["id"]

    await first.locator("[id^=accept-]").click()
    await expect(first.locator("#job-depart")).to_be_visible()

    ops = await (await new_context(viewport=DESKTOP)).new_page()
    await sign_in(ops, base, "ops", admin.email)
    await expect(ops.locator("#ops-connection")).to_have_text("实时已连接")
    applicant = ops.locator(f"#cert-table tr[data-technician='{technicians['uncertified'].technician.id}']")
    await expect(applicant).to_contain_text("未上传照片")

    # The applicant photographs his pending certificate on his phone; the open console shows it.
    applicant_phone = await (await new_context(viewport=PHONE, is_mobile=True, has_touch=True)).new_page()
    await sign_in(applicant_phone, base, "technician", technicians["uncertified"].account.email)
    await applicant_phone.locator("#my-certs input[type=file]").set_input_files(
        files=[{"name": "certificate.png", "mimeType": "image/png", "buffer": certificate_png()}])
    await expect(applicant_phone.locator("#my-certs [id^=cert-photo-msg-]")).to_have_text("证书照片已上传")
    await expect(applicant_phone.locator("#my-certs")).to_contain_text("已上传照片")
    await shot(applicant_phone, artifacts, "ops-00-certificate-photo")
    await expect(applicant).to_contain_text(NAMES["uncertified"])
    await expect(applicant).to_contain_text("考试 · 安装")
    await expect(applicant).to_contain_text("91 分 · 通过")
    thumbnail = applicant.locator("img.cert-photo-thumb")
    await expect(thumbnail).to_be_visible()
    assert await thumbnail.evaluate("img => img.complete && img.naturalWidth") == 640
    await applicant.locator("button.cert-photo").click()
    await expect(ops.locator("#cert-photo-dialog img")).to_be_visible()
    await ops.locator("#cert-photo-close").click()
    await expect(ops.locator("#cert-photo-dialog")).to_have_count(0)
    await ops.fill(f"#evidence-{hazard_id}", "用户已自行更换软管，电话回访确认")
    await ops.click(f"#resolve-{hazard_id}")
    await expect(ops.locator(f"tr[data-hazard='{hazard_id}']")).to_have_count(0)
    await ops.locator(f"#open-table tr[data-order='{order_id}']").click()
    detail = ops.locator("#order-detail")
    await expect(detail.locator("#detail-technician")).to_contain_text(NAMES["first"])
    candidates = detail.locator("#candidates")
    ids = {role: str(ctx.technician.id) for role, ctx in technicians.items()}
    await expect(candidates.locator(f"tr[data-candidate='{ids['first']}']")).to_contain_text("已选中")
    await expect(candidates.locator(f"tr[data-candidate='{ids['second']}']")).to_contain_text("综合排序靠后")
    await expect(candidates.locator(f"tr[data-candidate='{ids['uncertified']}']")).to_contain_text("无所需资质")
    await expect(detail.locator("#detail-timeline")).to_contain_text("维修员接单")
    await expect(detail.locator("#offers-table")).to_contain_text("已接单")
    await shot(ops, artifacts, "ops-01-order-candidates")

    # The uncertified technician is in the picker, but not choosable, with the reason.
    await expect(detail.locator(f"#assign-technician option[value='{ids['uncertified']}']")).to_be_disabled()
    await expect(detail.locator(f"#assign-technician option[value='{ids['uncertified']}']")).to_contain_text("无所需资质")
    await detail.locator("#assign-technician").select_option(ids["second"])
    await detail.locator("#assign-reason").fill("张师傅车辆故障，改派李师傅")
    await detail.locator("#assign-submit").click()
    await expect(detail.locator("#detail-technician")).to_contain_text(NAMES["second"])
    await expect(detail.locator("#detail-timeline")).to_contain_text("调度员指派维修员")
    await expect(second.locator("#job-depart")).to_be_visible()
    await expect(first.locator("#job-depart")).to_have_count(0)
    async with httpx.AsyncClient(base_url=base) as http:
        told_second = (await http.get("/v1/notifications", headers=technicians["second"].headers)).json()["data"]
        told_first = (await http.get("/v1/notifications", headers=technicians["first"].headers)).json()["data"]
    assert any(n["kind"] == "job_assigned" and n["payload"]["order_id"] == order_id for n in told_second)
    assert any(n["kind"] == "job_reassigned" and n["payload"]["order_id"] == order_id for n in told_first)
    await shot(ops, artifacts, "ops-02-reassigned")
    await shot(second, artifacts, "ops-03-new-technician")

    async with session_scope() as session:
        alert = await raise_alert(session, kind="emergency_unaccepted", level="critical", order_id=None,
                                  details={"minutes": 2})
    banner = ops.locator("#alert-banner")
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("抢险工单无人接单")
    await expect(banner).to_have_attribute("data-beeps", "1")
    await shot(ops, artifacts, "ops-04-alert-banner")
    await ops.reload()  # still there after a reload, fed by GET /v1/ops/alerts?open=true
    await expect(banner).to_contain_text("抢险工单无人接单")
    await ops.locator(f"#ack-{alert.id}").click()
    await expect(banner).to_be_hidden()
    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/v1/ops/alerts?open=true", headers=admin_headers)).json()["data"] == []
    assert offline.blocked == [], f"pages reached outside the machine: {offline.blocked}"
