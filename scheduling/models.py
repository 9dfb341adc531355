"""Tables of technicians' working time and of booked appointments. Times of day are local to the
technician's city (dispatch_city.timezone); instants are UTC."""

import uuid
from datetime import date, datetime, time
from typing import Any

from geoalchemy2 import Geography
from sqlalchemy import CheckConstraint, Column, Date, Index, SmallInteger, Time
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from kit.models import timestamp_column, utcnow


class WeeklyShift(SQLModel, table=True):
    """His working hours on one weekday (0 Monday .. 6 Sunday), with the breaks inside them
    (a list of ["HH:MM", "HH:MM"])."""

    __tablename__ = "scheduling_weekly_shift"
    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"),
        CheckConstraint("ends > starts", name="hours"),
    )

    technician_id: uuid.UUID = Field(foreign_key="dispatch_technician.id", primary_key=True)
    weekday: int = Field(sa_type=SmallInteger, primary_key=True)
    starts: time = Field(sa_type=Time)
    ends: time = Field(sa_type=Time)
    breaks: list[list[str]] = Field(default_factory=list, sa_type=JSONB)


class DayOff(SQLModel, table=True):
    """Whole local days he does not work, first to last inclusive."""

    __tablename__ = "scheduling_day_off"
    __table_args__ = (CheckConstraint("last_day >= first_day", name="days"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    technician_id: uuid.UUID = Field(foreign_key="dispatch_technician.id", index=True)
    first_day: date = Field(sa_type=Date)
    last_day: date = Field(sa_type=Date)
    reason: str = Field(default="", max_length=200)


class Roster(SQLModel, table=True):
    """Where his working day starts and ends (home or station), for the day planner."""

    __tablename__ = "scheduling_roster"

    technician_id: uuid.UUID = Field(foreign_key="dispatch_technician.id", primary_key=True)
    start_location: Any = Field(
        default=None, sa_column=Column(Geography("POINT", srid=4326, spatial_index=False), nullable=True))
    end_location: Any = Field(
        default=None, sa_column=Column(Geography("POINT", srid=4326, spatial_index=False), nullable=True))
    updated_at: datetime = timestamp_column(default_factory=utcnow)


class Booking(SQLModel, table=True):
    """The technician whose capacity a booked order holds; the window is the order's own
    (dispatch_order.window_start/window_end), and a cancelled order holds nothing."""

    __tablename__ = "scheduling_booking"

    order_id: uuid.UUID = Field(foreign_key="dispatch_order.id", primary_key=True)
    technician_id: uuid.UUID = Field(foreign_key="dispatch_technician.id", index=True)
    created_at: datetime = timestamp_column(default_factory=utcnow)


class PlanStop(SQLModel, table=True):
    """One stop of the day plan (scheduling/planner.py): the technician's `sequence`-th visit of
    his local `day` in `city_id`, with the planned arrival (service start, inside the booking's
    window) and departure. A city-day's plan is replaced whole when it is planned again."""

    __tablename__ = "scheduling_plan_stop"
    __table_args__ = (
        CheckConstraint("sequence >= 1", name="sequence"),
        CheckConstraint("planned_departure_at >= planned_arrival_at", name="times"),
        Index("ix_scheduling_plan_stop_city_day", "city_id", "day"),
    )

    order_id: uuid.UUID = Field(foreign_key="dispatch_order.id", primary_key=True)
    city_id: str = Field(foreign_key="dispatch_city.id", max_length=60)
    day: date = Field(sa_type=Date)
    technician_id: uuid.UUID = Field(foreign_key="dispatch_technician.id", index=True)
    sequence: int
    planned_arrival_at: datetime = timestamp_column()
    planned_departure_at: datetime = timestamp_column()
    planned_at: datetime = timestamp_column(default_factory=utcnow)
