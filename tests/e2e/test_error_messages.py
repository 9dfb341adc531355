"""Errors on a 360 px phone, in Chinese (the default) and in English: a sign-in address the server
refuses (the message names the field), a wrong sign-in, a wrong door code with the tries left, a
request that never reaches the server and a location permission refused, and checking in before
the door check are each shown in the page's language, never as the server's or the browser's English.
The screenshots land in test-artifacts/e2e/."""


import httpx
import pytest
from playwright.async_api import Page, expect

from tests.e2e.support import PHONE, shot, accepted_repair
from tests.factories import PASSWORD

# What the server and the browser say in English: none of it may reach the page.
RAW_ENGLISH = ["wrong email or password", "the code does not match", "tries left;", "Failed to fetch",
               "User denied Geolocation", "unavailable; try again", "has not verified the technician",
               "the request is not valid", "String should have at most"]
# An address the browser's email check accepts (it sets no length) and the server refuses: over 254 characters.
TOO_LONG_EMAIL = f"{'a' * 250}@example.com"
SHOWN = {
    "zh-CN": {"field": "请检查「邮箱」后重试", "login": "邮箱或密码错误", "code": "验证码不对，请让用户再核对其 App 上的 6 位验证码（还可输入 4 次）",
              "network": "网络不可用，请检查连接后重试", "geolocation": "未获得位置权限：请在浏览器设置中允许本站使用位置",
              "door": "签到前请先完成上门身份核验：输入用户 App 上显示的 6 位验证码"},
    "en": {"field": "Please check “Email” and try again", "login": "The email or password is not right",
           "code": "That is not the code in the customer's app; ask them to read it again (4 tries left)",
           "network": "No connection; check the network and try again",
           "geolocation": "Location access is blocked: allow this site to use your location in the browser settings",
           "door": "Do the door check before checking in: enter the 6-digit code shown in the customer's app"},
}


@pytest.fixture
async def en_route_job(committed_sessions):  # noqa: ANN001, ANN201
    """A repair order whose technician is on his way to the door."""
    async with committed_sessions() as session:
        customer, technician, order = await accepted_repair(session, "depart")
        await session.commit()
    return {"order_id": str(order.id), "customer": customer.account.email, "technician": technician.account.email}


def door_code(base: str, job: dict) -> str:
    """The code the customer's app shows, read through the API as the customer."""
    token = httpx.post(f"{base}/v1/auth/login", json={"email": job["customer"], "password": PASSWORD}).json()["access_token"]
    card = httpx.get(f"{base}/v1/orders/{job['order_id']}/technician", headers={"Authorization": f"Bearer {token}"})
    return card.json()["code"]


async def assert_no_raw_english(page: Page) -> None:
    for text in RAW_ENGLISH:
        await expect(page.locator("body")).not_to_contain_text(text)


@pytest.mark.parametrize("language", ["zh-CN", "en"])
async def test_errors_on_the_technicians_phone_are_in_his_language(
    language: str, api_worker, en_route_job, new_context, offline, artifacts,  # noqa: ANN001
) -> None:
    base = api_worker()
    shown = SHOWN[language]
    phone = await new_context(viewport=PHONE, is_mobile=True, has_touch=True)  # location permission not granted
    tech = await phone.new_page()
    await tech.goto(f"{base}/app/technician/")
    if language != "zh-CN":
        await tech.select_option("#lang-select", language)

    await tech.fill("#login-email", TOO_LONG_EMAIL)
    await tech.fill("#login-password", "not the password")
    await tech.click("#login-submit")  # a 422 validation-error whose loc is ["body", "email"]
    await expect(tech.locator("#login-form .error")).to_have_text(shown["field"])
    await assert_no_raw_english(tech)
    await shot(tech, artifacts, f"errors-{language}-00-field-refused")

    await tech.fill("#login-email", en_route_job["technician"])
    await tech.click("#login-submit")
    await expect(tech.locator("#login-form .error")).to_have_text(shown["login"])
    await assert_no_raw_english(tech)
    await shot(tech, artifacts, f"errors-{language}-01-wrong-login")

    await tech.fill("#login-password", PASSWORD)
    await tech.click("#login-submit")
    await expect(tech.locator("#gps")).to_have_text(shown["geolocation"])
    await tech.click("#job-arrive")  # before the door check: the message tells him what to do
    await expect(tech.locator(".job > .error")).to_have_text(shown["door"])
    code = door_code(base, en_route_job)
    await tech.fill("#door-code-input", f"{(int(code) + 1) % 10**6:06d}")
    await tech.click("#verify-code")
    await expect(tech.locator("#verify-form .error")).to_have_text(shown["code"])
    await assert_no_raw_english(tech)
    await shot(tech, artifacts, f"errors-{language}-02-wrong-door-code")

    await tech.route("**/verify-code", lambda route: route.abort("internetdisconnected"))
    await tech.click("#verify-code")
    await expect(tech.locator("#verify-form .error")).to_have_text(shown["network"])
    await assert_no_raw_english(tech)
    await shot(tech, artifacts, f"errors-{language}-03-network-failure")
    assert offline.blocked == []
