"""Technicians' working time: weekly shifts with breaks, days off, start and end places; edited
by the technician himself or by operations, refused with the field at fault."""

import uuid
from datetime import timedelta

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.factories import make_customer, make_staff, make_technician
from tests.scheduling.scheduling_factories import LUNCH, day_ahead, put_week, week


async def test_a_technician_sets_and_reads_his_week(client: AsyncClient, session: AsyncSession) -> None:
    technician = await make_technician(session)
    first = day_ahead(5)
    saved = await put_week(client, technician.headers, days_off=[
        {"first_day": first.isoformat(), "last_day": (first + timedelta(days=2)).isoformat(), "reason": "年假"}])
    read = (await client.get("/v1/technicians/me/shifts", headers=technician.headers)).json()
    assert read == saved
    assert read["timezone"] == "Asia/Shanghai"
    assert read["weekly"][0] == {"weekday": 0, "start": "08:00:00", "end": "18:00:00",
                                 "breaks": [{"start": "12:00:00", "end": "13:00:00"}]}
    assert [(d["first_day"], d["reason"]) for d in read["days_off"]] == [(first.isoformat(), "年假")]


async def test_start_and_end_places_are_kept(client: AsyncClient, session: AsyncSession) -> None:
    technician = await make_technician(session)
    home = {"type": "Point", "coordinates": [120.1, 30.2]}
    response = await client.put("/v1/technicians/me/shifts", headers=technician.headers,
                                json={"weekly": week(), "start_location": home, "end_location": home})
    assert response.status_code == 200, response.text
    assert response.json()["start_location"] == home and response.json()["end_location"] == home


def _bad(case: str) -> tuple[dict, str]:
    shifts, days_off = week(), []
    first = day_ahead(4)
    if case == "shift ends before it starts":
        shifts[0] |= {"start": "18:00", "end": "08:00"}
        return {"weekly": shifts}, "weekly[0].end"
    if case == "break outside its shift":
        shifts[0]["breaks"] = [{"start": "19:00", "end": "20:00"}]
        return {"weekly": shifts}, "weekly[0].breaks[0]"
    if case == "overlapping breaks":
        shifts[2]["breaks"] = [*LUNCH, {"start": "12:30", "end": "14:00"}]
        return {"weekly": shifts}, "weekly[2].breaks[1]"
    if case == "a break with an offset":
        shifts[4]["breaks"] = [*LUNCH, {"start": "15:00+08:00", "end": "15:30"}]
        return {"weekly": shifts}, "weekly[4].breaks[1].start"
    if case == "two shifts on one weekday":
        shifts[1]["weekday"] = 0
        return {"weekly": shifts}, "weekly[1].weekday"
    if case == "overlapping days off":
        days_off = [{"first_day": first.isoformat(), "last_day": (first + timedelta(days=3)).isoformat()},
                    {"first_day": (first + timedelta(days=2)).isoformat(), "last_day": (first + timedelta(days=5)).isoformat()}]
        return {"weekly": shifts, "days_off": days_off}, "days_off[1]"
    if case == "day off in the past":
        past = day_ahead(-3)
        return {"weekly": shifts, "days_off": [{"first_day": past.isoformat(), "last_day": past.isoformat()}]}, \
            "days_off[0].last_day"
    assert case == "last day off before the first"
    return {"weekly": shifts, "days_off": [{"first_day": first.isoformat(),
                                            "last_day": (first - timedelta(days=1)).isoformat()}]}, "days_off[0].last_day"


@pytest.mark.parametrize("case", ["shift ends before it starts", "break outside its shift", "overlapping breaks",
                                  "a break with an offset", "two shifts on one weekday", "overlapping days off", "day off in the past",
                                  "last day off before the first"])
async def test_inconsistent_working_time_is_refused_naming_the_field(client: AsyncClient, session: AsyncSession,
                                                                      case: str) -> None:
    technician = await make_technician(session)
    body, field = _bad(case)
    response = await client.put("/v1/technicians/me/shifts", headers=technician.headers, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/schedule-invalid"
    assert response.json()["field"] == field
    assert (await client.get("/v1/technicians/me/shifts", headers=technician.headers)).json()["weekly"] == []


async def test_a_malformed_time_is_a_validation_error_naming_it(client: AsyncClient, session: AsyncSession) -> None:
    technician = await make_technician(session)
    shifts = week()
    shifts[3]["end"] = "25:00"
    response = await client.put("/v1/technicians/me/shifts", headers=technician.headers, json={"weekly": shifts})
    assert response.status_code == 422
    assert response.json()["type"] == "/problems/validation-error"
    assert response.json()["errors"][0]["loc"] == ["body", "weekly", "3", "end"]


async def test_operations_edit_a_technicians_week_and_the_auditor_only_reads_it(
    client: AsyncClient, session: AsyncSession,
) -> None:
    technician = await make_technician(session)
    _, admin = await make_staff(session, "admin")
    _, auditor = await make_staff(session, "auditor")
    path = f"/v1/ops/technicians/{technician.technician.id}/shifts"
    response = await client.put(path, headers=admin, json={"weekly": week("09:00", "17:00", [])})
    assert response.status_code == 200, response.text
    mine = (await client.get("/v1/technicians/me/shifts", headers=technician.headers)).json()
    assert mine["weekly"][0]["start"] == "09:00:00"
    assert (await client.get(path, headers=auditor)).json() == mine
    assert (await client.put(path, headers=auditor, json={"weekly": []})).status_code == 403


async def test_a_technician_cannot_read_or_edit_anothers_week(client: AsyncClient, session: AsyncSession) -> None:
    technician = await make_technician(session)
    other = await make_technician(session)
    await put_week(client, other.headers)
    path = f"/v1/ops/technicians/{other.technician.id}/shifts"
    assert (await client.put(path, headers=technician.headers, json={"weekly": []})).status_code == 403
    assert (await client.get(path, headers=technician.headers)).status_code == 403
    customer = await make_customer(session)
    assert (await client.put("/v1/technicians/me/shifts", headers=customer.headers, json={"weekly": []})).status_code == 403
    assert len((await client.get(path, headers=(await make_staff(session, "admin"))[1])).json()["weekly"]) == 7


async def test_an_unknown_technician_is_not_found(client: AsyncClient, session: AsyncSession) -> None:
    _, admin = await make_staff(session, "admin")
    response = await client.put(f"/v1/ops/technicians/{uuid.uuid4()}/shifts", headers=admin, json={"weekly": week()})
    assert response.status_code == 404
