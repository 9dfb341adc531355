"""Appointment windows and the capacity rule, pure: plain data in, windows with room out.

The rule (honest and simple, no route solving):
- A day (local to the city) is cut into 2-hour arrival windows starting at local midnight
  (08:00-10:00, 10:00-12:00, ...). A customer books one window; the technician arrives inside it.
- A technician can serve a visit in a window when he works that day (a weekly shift for the
  weekday, no day off), the whole window lies inside his shift, it touches none of his breaks,
  and his certification for the work is verified and valid for the whole window.
- Each visit takes the service kind's typical duration plus a travel allowance (30 minutes):
  its load. A technician takes visits arriving in one window while their loads fit in it:
  N = max(1, 120 // load) visits of one kind (one when a visit is longer than the window). With
  visits already booked for him overlapping the window (not cancelled), he has room for
  (120 - their loads) // load more of the asked kind, so a booked repair (90) leaves no room
  for an inspection (60) in its window, while a booked inspection leaves room for another.
- A window's capacity is the sum of that room over the technicians who can serve it; it is
  offered while the capacity is positive and it starts at least the travel allowance from now
  (the order is released into matching then: see scheduling.service.release_due).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WINDOW = timedelta(hours=2)
TRAVEL_ALLOWANCE = timedelta(minutes=30)
# How far ahead a customer may book.
HORIZON_DAYS = 30


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime

    def overlaps(self, other: "Interval") -> bool:
        return self.start < other.end and other.start < self.end

    def within(self, other: "Interval") -> bool:
        return other.start <= self.start and self.end <= other.end


@dataclass(frozen=True)
class TechnicianDay:
    """One technician's working day: his shift (None: he does not work), breaks, the spans his
    certifications for the work are usable, and the windows of the visits already booked for him."""

    technician_id: str
    shift: Interval | None
    breaks: tuple[Interval, ...] = ()
    certified: tuple[Interval, ...] = ()
    booked: tuple[tuple[Interval, int], ...] = ()  # (window, load in minutes)


@dataclass(frozen=True)
class Slot:
    window: Interval
    capacity: int
    technician_ids: tuple[str, ...]  # those with room, most room first


def load_minutes(duration_min: int) -> int:
    return duration_min + int(TRAVEL_ALLOWANCE.total_seconds() // 60)


def visits_per_window(load_min: int) -> int:
    return max(1, WINDOW // timedelta(minutes=load_min))


def local_interval(day: date, starts: time, ends: time, tz: ZoneInfo) -> Interval:
    return Interval(datetime.combine(day, starts, tz), datetime.combine(day, ends, tz))


def windows_of(day: date, tz: ZoneInfo) -> list[Interval]:
    """The day's windows; the zone's wall clock (a DST jump shortens or skips a window's start)."""
    out = []
    for hour in range(0, 24, int(WINDOW.total_seconds() // 3600)):
        start = datetime.combine(day, time(hour), tz)
        out.append(Interval(start, start + WINDOW))
    return out


def room(tech: TechnicianDay, window: Interval, load_min: int) -> int:
    """How many more visits of `load_min` he can take arriving in `window`."""
    if tech.shift is None or not window.within(tech.shift):
        return 0
    if not any(window.within(c) for c in tech.certified):
        return 0
    if any(window.overlaps(b) for b in tech.breaks):
        return 0
    booked = sum(load for w, load in tech.booked if window.overlaps(w))
    if booked == 0:
        return visits_per_window(load_min)
    return max(0, (int(WINDOW.total_seconds() // 60) - booked) // load_min)


def slots(technicians: Iterable[TechnicianDay], windows: Sequence[Interval], load_min: int,
          not_before: datetime) -> list[Slot]:
    """The windows with room, in time order."""
    techs = list(technicians)
    out = []
    for window in windows:
        if window.start < not_before:
            continue
        rooms = sorted(((room(t, window, load_min), t.technician_id) for t in techs), key=lambda r: (-r[0], r[1]))
        rooms = [r for r in rooms if r[0] > 0]
        if rooms:
            out.append(Slot(window, sum(r[0] for r in rooms), tuple(t for _, t in rooms)))
    return out
