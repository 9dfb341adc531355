"""The events meters publish: faults, the household's safety advice and service reminders."""

import uuid

from kit.events import Event, IsoDatetime


class FaultDetected(Event):
    """`joined`: the fault joined the home's open emergency order instead of opening one."""

    topic = "meters.fault_detected"
    fault_id: uuid.UUID
    fault_kind: str
    device_id: uuid.UUID
    order_id: uuid.UUID
    customer_id: uuid.UUID
    address_id: uuid.UUID
    joined: bool


class SafetyAdviceIssued(Event):
    """`text` by language ("zh", "en"); `steps` are slugs the apps translate."""

    topic = "meters.safety_advice_issued"
    customer_id: uuid.UUID
    address_id: uuid.UUID
    device_id: uuid.UUID
    order_id: uuid.UUID
    text: dict[str, str]
    steps: list[str]


class MaintenanceReminderDue(Event):
    topic = "meters.maintenance_reminder_due"
    customer_id: uuid.UUID
    address_id: uuid.UUID
    appliance_kind: str
    order_kind: str
    used_m3: float
    days_since_service: int
    last_serviced_at: IsoDatetime | None
