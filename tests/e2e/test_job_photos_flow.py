"""Photos as evidence of a job, in a real browser: on a 360 px phone the technician photographs the
work and a hazard he fixes on site with two parts, completes; the customer sees the work's photo,
the operations console the hazard's."""

import io

from PIL import Image
from playwright.async_api import expect

from tests.e2e.support import DESKTOP, job_in_service, shot, sign_in
from tests.e2e.test_order_flow import FAST, people  # noqa: F401 (people: fixture)


def png(colour: tuple[int, int, int]) -> list[dict]:
    """A 200 px picture as the file chooser hands it over."""
    out = io.BytesIO()
    Image.new("RGB", (200, 200), colour).save(out, format="PNG")
    return [{"name": "photo.png", "mimeType": "image/png", "buffer": out.getvalue()}]


async def test_a_hazard_photo_taken_on_the_phone_is_shown_in_the_ops_order_detail(
    api_worker, people, new_context, artifacts,  # noqa: ANN001, F811
) -> None:
    base = api_worker(**FAST)
    tech, customer = await job_in_service(new_context, base, people)
    order_id = await tech.locator("article.job").get_attribute("data-order")

    ops = await (await new_context(viewport=DESKTOP)).new_page()
    await sign_in(ops, base, "ops", people["admin"])
    await ops.locator(f"#open-table tr[data-order='{order_id}']").click()
    await expect(ops.locator("#order-detail #detail-status")).to_have_text("服务中")

    await tech.fill("#work-done", "检查灶具")
    await tech.locator("#work-photo").set_input_files(files=png((30, 90, 180)))
    await expect(tech.locator("#work-photo-thumbs img")).to_have_count(1)
    await tech.select_option("#hazard-category", "leaking_connector")
    await tech.select_option("#hazard-resolution", "fixed_on_site")
    await tech.fill("#hazard-fix-text", "更换接头和密封圈，复测无泄漏")
    for part in ("燃气接头", "密封圈"):
        await tech.fill("#hazard-fix-part", part)
        await tech.click("#add-fix-part")
    await expect(tech.locator("#fix-parts-list li")).to_have_count(2)
    await tech.locator("#hazard-photo").set_input_files(files=png((180, 90, 30)))
    await expect(tech.locator("#hazard-photo-thumbs img")).to_have_count(1)
    await shot(tech, artifacts, "photos-00-hazard-photo-attached")
    await tech.click("#add-hazard")
    hazard = tech.locator("#hazards-list li")
    await expect(hazard).to_contain_text("燃气接头 × 1, 密封圈 × 1")
    await expect(hazard.locator("img.photo-thumb")).to_have_count(1)
    await tech.click("#job-complete")
    await expect(customer.locator("#order-status-pill")).to_have_text("已完成")
    await expect(customer.locator("#report .report-photos img")).to_have_js_property("naturalWidth", 200)

    thumb = ops.locator("#order-detail #detail-hazards img.photo-thumb")
    await expect(thumb).to_be_visible()
    await expect(thumb).to_have_js_property("naturalWidth", 200)  # the image itself, resized on the phone
    await shot(ops, artifacts, "photos-01-ops-detail-thumbnail")
