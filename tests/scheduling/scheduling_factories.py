"""Working time and days for the scheduling tests: a week of shifts put through the API, and a
local day far enough ahead that none of its windows has begun."""

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from httpx import AsyncClient

TZ = ZoneInfo("Asia/Shanghai")
LUNCH = [{"start": "12:00", "end": "13:00"}]


def day_ahead(days: int = 3) -> date:
    return datetime.now(timezone.utc).astimezone(TZ).date() + timedelta(days=days)


def local(day: date, hour: int) -> datetime:
    return datetime.combine(day, datetime.min.time().replace(hour=hour), TZ)


def week(start: str = "08:00", end: str = "18:00", breaks: list | None = None) -> list[dict]:
    return [{"weekday": d, "start": start, "end": end, "breaks": LUNCH if breaks is None else breaks} for d in range(7)]


async def put_week(client: AsyncClient, headers: dict[str, str], *, days_off: list[dict] | None = None,
                   **shift: object) -> dict:
    response = await client.put("/v1/technicians/me/shifts", headers=headers,
                                json={"weekly": week(**shift), "days_off": days_off or []})
    assert response.status_code == 200, response.text
    return response.json()


async def slot_starts(client: AsyncClient, headers: dict[str, str], address_id: object, day: date,
                      kind: str = "repair") -> dict[int, int]:
    """Local start hour -> capacity of the day's offered windows."""
    response = await client.get("/v1/slots", headers=headers,
                                params={"address_id": str(address_id), "kind": kind, "date": day.isoformat()})
    assert response.status_code == 200, response.text
    return {datetime.fromisoformat(s["window_start"]).astimezone(TZ).hour: s["capacity"] for s in response.json()["data"]}
