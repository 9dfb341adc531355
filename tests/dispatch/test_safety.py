"""The public "I smell gas" advice: the steps as slugs in the order to follow them, the city's
gas emergency hotline from the settings and 119 always, for anyone without signing in; a methane
alarm's notification carries the same steps."""

from datetime import datetime, timezone

import pytest
from httpx import AsyncClient
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import Settings, get_settings
from kit.events import drain
from meters.ingest import Ingestor, Telemetry
from tests.meters.meters_factories import make_device

STEPS = ["leave_room", "no_flames_or_switches", "no_phone_inside", "open_windows_if_safe", "close_meter_valve"]


async def test_anyone_gets_the_gas_leak_steps_and_the_citys_hotline_without_signing_in(client: AsyncClient) -> None:
    response = await client.get("/v1/safety/gas-leak")
    assert response.status_code == 200, response.text
    assert response.json() == {"steps": STEPS, "hotlines": [{"city": "demo", "number": "96777"}, {"number": "119"}]}
    assert response.headers["cache-control"] == "public, max-age=300"


async def test_the_hotline_is_the_configured_citys_own(client: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "city", "hangzhou")
    monkeypatch.setattr(get_settings(), "emergency_hotlines", {"demo": "96777", "hangzhou": "0571-96777"})
    hotlines = (await client.get("/v1/safety/gas-leak")).json()["hotlines"]
    assert hotlines == [{"city": "hangzhou", "number": "0571-96777"}, {"number": "119"}]


async def test_a_city_without_a_hotline_still_shows_119(client: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "city", "nowhere")
    assert (await client.get("/v1/safety/gas-leak")).json()["hotlines"] == [{"number": "119"}]


def test_hotlines_come_from_the_environment_by_city(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GASDISPATCH_EMERGENCY_HOTLINES", '{"hangzhou": "0571-96777", "ningbo": "+86-574-96777"}')
    assert Settings(environment="test").emergency_hotlines == {"hangzhou": "0571-96777", "ningbo": "+86-574-96777"}


@pytest.mark.parametrize("number", ["call 96777", "", "96777;drop", "tel:96777"])
def test_a_hotline_that_cannot_be_dialled_is_refused_at_start(number: str) -> None:
    with pytest.raises(ValidationError, match="emergency_hotlines"):
        Settings(environment="test", emergency_hotlines={"demo": number})


async def test_methane_alarm_notification_carries_the_same_steps_as_the_public_advice(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    detector, customer = await make_device(session, kind="detector", protocol="nbiot", external_id="861000000014001")
    now = datetime.now(timezone.utc)
    await Ingestor().ingest(session, redis, [Telemetry(detector.external_id, "nbiot", now, now, alarm=True)],
                            channel="webhook", source="platform:ctwing", now=now)
    await drain(session)
    notices = (await client.get("/v1/notifications", headers=customer.headers)).json()["data"]
    advice = [n for n in notices if n["kind"] == "alarm_safety_advice"]
    assert len(advice) == 1
    assert advice[0]["payload"]["steps"] == (await client.get("/v1/safety/gas-leak")).json()["steps"] == STEPS
    assert "close the main gas valve" in advice[0]["body"]  # SMS and other channels still get prose
    hotlines = (await client.get("/v1/safety/gas-leak")).json()["hotlines"]
    assert advice[0]["payload"]["hotlines"] == hotlines
    assert all(line["number"] in advice[0]["body"] for line in hotlines)  # 119 too
