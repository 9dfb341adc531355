"""Photos as evidence, on 360 px phones in zh-CN and English: the technician photographs the work
(a 3000 px picture, made 2000 px on the phone before upload) and a hazard he fixes on site; the
customer sees both on his order; after the review the auditor, on his phone, opens the
settlement's evidence, sees each photo with what it shows and its hash, and downloads the bundle,
whose photos match their hashes. Screenshots land in test-artifacts/e2e/ (whole pages) and
docs/screenshots/ (the customer's order; the evidence's photos)."""

import asyncio
import hashlib
import io
import json
import shutil
import uuid
import zipfile
from datetime import datetime, timedelta, timezone

from PIL import Image
from playwright.async_api import expect
from sqlmodel import select

from dispatch.field.models import JobPhoto
from ratings import service as ratings
from ratings.models import Review
from settlement.models import Settlement
from tests.e2e.support import PHONE, ROOT, job_in_service, shot, sign_in
from tests.e2e.test_order_flow import FAST, people  # noqa: F401 (people: fixture)

SCREENSHOTS = ROOT / "docs" / "screenshots"


def picture(colour: tuple[int, int, int], size: tuple[int, int]) -> list[dict]:
    """A picture as the phone's file chooser hands it over."""
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return [{"name": "IMG_0001.png", "mimeType": "image/png", "buffer": out.getvalue()}]


async def until(committed_sessions, query, what: str):  # noqa: ANN001, ANN201
    """The first row `query` finds, polled while the embedded worker does its part after the commits."""
    deadline = datetime.now(timezone.utc) + timedelta(seconds=90)
    async with committed_sessions() as session:
        while True:
            found = (await session.exec(query.execution_options(populate_existing=True))).first()
            if found:
                return found
            assert datetime.now(timezone.utc) < deadline, f"the worker did not {what}"
            await session.rollback()
            await asyncio.sleep(0.3)


async def test_photo_upload_shown_in_the_evidence_bundle(
    api_worker, people, committed_sessions, new_context, offline, artifacts,  # noqa: ANN001, F811
) -> None:
    base = api_worker(**FAST)
    tech, customer = await job_in_service(new_context, base, people)
    order_id = uuid.UUID(await tech.locator("article.job").get_attribute("data-order"))

    await tech.fill("#work-done", "更换灶前阀接头，复测无泄漏")
    await tech.locator("#work-photo").set_input_files(files=picture((30, 90, 180), (3000, 2000)))
    await expect(tech.locator("#work-photo-thumbs img")).to_have_count(1)
    await tech.select_option("#hazard-category", "leaking_connector")
    await tech.select_option("#hazard-resolution", "fixed_on_site")
    await tech.fill("#hazard-fix-text", "更换接头和密封圈")
    await tech.locator("#hazard-photo").set_input_files(files=picture((180, 90, 30), (1200, 1600)))
    await expect(tech.locator("#hazard-photo-thumbs img")).to_have_count(1)
    await tech.click("#add-hazard")
    await tech.click("#job-complete")
    await expect(customer.locator("#order-status-pill")).to_have_text("已完成")

    # The customer sees the photos as uploaded: resized on the phone to 2000 px at most, as JPEG.
    await expect(customer.locator("#report .report-photos img")).to_have_js_property("naturalWidth", 2000)
    await expect(customer.locator("#hazards .hazard-photos img")).to_have_js_property("naturalWidth", 1200)
    await customer.locator("#report").scroll_into_view_if_needed()
    await shot(customer, artifacts, "evidence-01-customer-photos")
    await customer.click("#submit-review")
    await expect(customer.locator("#review-done")).to_contain_text("★★★★★")

    review_id = await until(committed_sessions, select(Review.id).where(Review.order_id == order_id), "record the review")
    async with committed_sessions() as session:  # the edit window's end, without waiting for the job
        await ratings.finalize_review(session, review_id)
        await session.commit()
    await until(committed_sessions, select(Settlement.id).where(Settlement.order_id == order_id), "settle")
    async with committed_sessions() as session:
        stored = {p.sha256: p for p in (await session.exec(select(JobPhoto).where(JobPhoto.order_id == order_id))).all()}
    assert {p.media_type for p in stored.values()} == {"image/jpeg"}

    auditor = await (await new_context(viewport=PHONE, is_mobile=True, has_touch=True)).new_page()
    await sign_in(auditor, base, "auditor", people["auditor"])
    await auditor.locator(f"tr[data-order='{order_id}']").click()
    photos = auditor.locator("#evidence-photos li")
    await expect(photos).to_have_count(2)
    await expect(photos.nth(0)).to_contain_text("施工")
    await expect(photos.nth(1)).to_contain_text("隐患：接头漏气")
    await expect(photos.nth(0).locator("img")).to_have_js_property("naturalWidth", 2000)
    await expect(photos.nth(1).locator("img")).to_have_js_property("naturalWidth", 1200)
    shown = [await photos.nth(i).get_attribute("data-sha256") for i in range(2)]
    assert set(shown) == set(stored)
    await expect(photos.nth(0)).to_contain_text(f"SHA-256 {shown[0][:16]}…")

    async with auditor.expect_download() as downloading:
        await auditor.click("#download-evidence")
    download = await downloading.value
    assert download.suggested_filename.startswith("evidence-") and download.suggested_filename.endswith(".zip")
    with zipfile.ZipFile(await download.path()) as archive:
        listed = json.loads(archive.read("evidence.json"))["photos"]
        assert [p["sha256"] for p in listed] == shown
        for p in listed:
            assert hashlib.sha256(archive.read(p["file"])).hexdigest() == p["sha256"]
    await shot(auditor, artifacts, "evidence-02-auditor-photos")
    await auditor.locator("#evidence-photos-part").screenshot(path=str(artifacts / "evidence-02-auditor-photos-part.png"))

    await auditor.select_option("#lang-select", "en")
    await expect(photos.nth(0)).to_contain_text("The work")
    await expect(photos.nth(1)).to_contain_text("Hazard: Leaking connector")
    await expect(auditor.locator("#download-evidence")).to_have_text("Download the evidence (ZIP, with the photos)")
    await expect(photos.nth(1).locator("img")).to_have_js_property("naturalWidth", 1200)
    await shot(auditor, artifacts, "evidence-03-auditor-photos-en")
    await auditor.locator("#evidence-photos-part").screenshot(path=str(artifacts / "evidence-03-auditor-photos-en-part.png"))

    assert offline.blocked == [], f"pages reached outside the machine: {offline.blocked}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, source in (("customer-report-photos", "evidence-01-customer-photos"),
                         ("auditor-evidence-photos", "evidence-02-auditor-photos-part"),
                         ("auditor-evidence-photos-en", "evidence-03-auditor-photos-en-part")):
        shutil.copyfile(artifacts / f"{source}.png", SCREENSHOTS / f"{name}.png")
