"""API shapes of working time, windows and bookings. Times of day are local to the city
(`timezone` says which), instants RFC 3339."""

import uuid
from datetime import date, datetime, time
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field

from kit.schemas import GeoPoint, Input


class BreakIn(Input):
    start: time
    end: time


class WeeklyShiftIn(Input):
    weekday: int = Field(ge=0, le=6, description="0 Monday .. 6 Sunday")
    start: time
    end: time
    breaks: list[BreakIn] = Field(default_factory=list, max_length=6)


class DayOffIn(Input):
    first_day: date
    last_day: date
    reason: str = Field(default="", max_length=200)


class ScheduleIn(Input):
    """Replaces the weekly shifts, the start and end places, and the days off from today on
    (past days off stay as they were)."""

    weekly: list[WeeklyShiftIn] = Field(max_length=7)
    days_off: list[DayOffIn] = Field(default_factory=list, max_length=100)
    start_location: GeoPoint | None = None
    end_location: GeoPoint | None = None


class DayOffPublic(BaseModel):
    id: uuid.UUID
    first_day: date
    last_day: date
    reason: str


class SchedulePublic(BaseModel):
    technician_id: uuid.UUID
    timezone: str
    weekly: list[WeeklyShiftIn]
    days_off: list[DayOffPublic]
    start_location: dict[str, Any] | None
    end_location: dict[str, Any] | None


class SlotPublic(BaseModel):
    window_start: datetime
    window_end: datetime
    capacity: int


class SlotsPublic(BaseModel):
    date: date
    timezone: str
    kind: str
    data: list[SlotPublic]


class BookingCreate(Input):
    address_id: uuid.UUID
    kind: str = Field(min_length=1, max_length=40)
    window_start: AwareDatetime
    description: str = Field(default="", max_length=2000)


class BookingMove(Input):
    window_start: AwareDatetime


class PlannedStopPublic(BaseModel):
    """A stop of the day plan: arrive at `planned_arrival_at` (inside the window), leave at
    `planned_departure_at`."""

    sequence: int
    technician_id: uuid.UUID
    order_id: uuid.UUID
    kind: str
    address: str
    location: dict[str, Any] | None
    window_start: datetime
    window_end: datetime
    planned_arrival_at: datetime
    planned_departure_at: datetime


class DayPlanPublic(BaseModel):
    """A city-day's plan, or one technician's part of it: by technician, then sequence."""

    city_id: str
    date: date
    timezone: str
    planned_at: datetime | None
    data: list[PlannedStopPublic]
