"""Every page at phone width (360 px): the sign-in form and the signed-in screen have a label
on every control, main buttons with AA contrast, and no sideways scroll."""

import pytest
from playwright.async_api import expect

from tests.e2e.support import PHONE, assert_accessible
from tests.factories import PASSWORD, make_customer, make_staff, make_technician

APPS = (("customer", "customer"), ("technician", "technician"), ("auditor", "auditor"), ("ops", "admin"))


@pytest.fixture
async def accounts(committed_sessions):  # noqa: ANN001, ANN201
    async with committed_sessions() as session:
        emails = {"customer": (await make_customer(session)).account.email,
                  "technician": (await make_technician(session)).account.email,
                  "auditor": (await make_staff(session, "auditor"))[0].email,
                  "admin": (await make_staff(session, "admin"))[0].email}
        await session.commit()
    return emails


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
async def test_every_page_is_labelled_readable_and_fits_a_phone(api_worker, accounts, new_context, offline, lang) -> None:  # noqa: ANN001
    base = api_worker()
    context = await new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    await context.add_init_script(f"if (location.protocol === 'http:') localStorage.setItem('gasdispatch.lang', '{lang}')")
    page = await context.new_page()
    await page.goto(f"{base}/")
    await expect(page.locator("a.button")).to_have_count(4)
    await assert_accessible(page, f"landing {lang}")
    for app, role in APPS:
        await page.goto(f"{base}/app/{app}/")
        await expect(page.locator("#login-form")).to_be_visible()
        await assert_accessible(page, f"{app} sign-in {lang}")
        await page.fill("#login-email", accounts[role])
        await page.fill("#login-password", PASSWORD)
        await page.click("#login-submit")
        await expect(page.locator("#sign-out")).to_be_visible()
        await page.wait_for_load_state("networkidle")
        await assert_accessible(page, f"{app} {lang}")
        await page.click("#sign-out")
    assert offline.blocked == []
