"""Scheduling's domain errors; `field` names the input at fault (e.g. `weekly[0].breaks[1]`)."""

from kit.errors import Conflict, InvalidInput


class ScheduleInvalid(InvalidInput):
    """The working time is not consistent: a shift ending before it starts, a break outside its
    shift, overlapping days off, a day off in the past."""

    slug = "schedule-invalid"
    fields = ("field",)

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.extra = {"field": field}


class BookingInvalid(InvalidInput):
    """The requested window cannot be booked: in the past, too far ahead, or not one of the offered windows."""

    slug = "booking-invalid"
    fields = ("field",)

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.extra = {"field": field}


class OnDemandOnly(InvalidInput):
    """Emergencies and urgent work are dispatched at once, never booked for later."""

    slug = "on-demand-only"
    fields = ("field", "priority")

    def __init__(self, priority: str) -> None:
        super().__init__(f"a {priority} service is dispatched at once, not booked")
        self.extra = {"field": "kind", "priority": priority}


class SlotUnavailable(Conflict):
    """No technician has room in this window any more; choose another."""

    slug = "slot-unavailable"
