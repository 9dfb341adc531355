"""Maintenance reminders from consumption and elapsed time since an appliance's last service.

Per address and appliance kind: due when the gas used since the last service (or since the
meter was installed) or the days elapsed reach the kind's thresholds (settings). At most one
reminder per kind per period: the conditional UPDATE on `meters_reminder` lets only one run
through, whatever runs concurrently.
"""

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import service as dispatch_service
from dispatch.events import OrderStatusChanged
from kit.config import Settings
from kit.events import handles, publish_event
from meters.events import MaintenanceReminderDue
from meters.models import Reminder

SERVICE_FOR_APPLIANCE = {"boiler": "boiler_service", "stove": "stove_cleaning", "hose": "hose_replacement"}
APPLIANCE_FOR_SERVICE = {v: k for k, v in SERVICE_FOR_APPLIANCE.items()}

# Per address and appliance: the service baseline and the gas used since, over its meters.
_USAGE = text("""
SELECT d.address_id, d.customer_id, min(d.installed_at) AS installed_at, r.last_serviced_at,
       coalesce(sum(u.used), 0) AS used_m3
FROM meters_device d
LEFT JOIN meters_reminder r ON r.address_id = d.address_id AND r.appliance_kind = :kind
LEFT JOIN LATERAL (
    SELECT max(volume_m3) - min(volume_m3) AS used FROM meters_reading
    WHERE device_id = d.id AND read_at >= coalesce(r.last_serviced_at, d.installed_at)
) u ON true
WHERE d.kind = 'meter' AND d.appliances ? :kind
GROUP BY d.address_id, d.customer_id, r.last_serviced_at
""")


async def due_reminders(session: AsyncSession, *, settings: Settings, now: datetime) -> list[dict[str, Any]]:
    """Publish `meters.maintenance_reminder_due` for every due appliance; returns the payloads."""
    period = timedelta(days=settings.meters_reminder_period_days)
    issued = []
    for appliance, threshold in settings.meters_reminder_thresholds.items():
        rows = (await session.execute(_USAGE, {"kind": appliance})).all()
        for address_id, customer_id, installed_at, serviced_at, used in rows:
            since = serviced_at or installed_at
            days = (now - since).total_seconds() / 86400
            if used < threshold["m3"] and days < threshold["days"]:
                continue
            if not await _claim(session, address_id, customer_id, appliance, now=now, period=period):
                continue
            reminder = MaintenanceReminderDue(
                customer_id=customer_id, address_id=address_id, appliance_kind=appliance,
                order_kind=SERVICE_FOR_APPLIANCE[appliance], used_m3=round(float(used), 3),
                days_since_service=int(days), last_serviced_at=serviced_at)
            await publish_event(session, reminder)
            issued.append(reminder.wire())
    return issued


async def _claim(session: AsyncSession, address_id: uuid.UUID, customer_id: uuid.UUID, appliance: str, *,
                 now: datetime, period: timedelta) -> bool:
    """True for exactly one caller per address, appliance and period."""
    claimed = (await session.execute(
        insert(Reminder).values(address_id=address_id, appliance_kind=appliance, customer_id=customer_id,
                                last_reminded_at=now)
        .on_conflict_do_update(
            index_elements=["address_id", "appliance_kind"], set_={"last_reminded_at": now},
            where=(Reminder.last_reminded_at.is_(None)) | (Reminder.last_reminded_at <= now - period))
        .returning(Reminder.address_id))).first()
    return claimed is not None


@handles(OrderStatusChanged)
async def on_order_status_changed(session: AsyncSession, event: OrderStatusChanged) -> None:
    """A completed maintenance order resets its appliance's baseline."""
    if event.to != "completed":
        return
    order = await dispatch_service.get_order(session, event.order_id)
    appliance = APPLIANCE_FOR_SERVICE.get(order.kind)
    if appliance is None:
        return
    await session.execute(
        insert(Reminder).values(address_id=order.address_id, appliance_kind=appliance, customer_id=order.customer_id,
                                last_serviced_at=order.updated_at)
        .on_conflict_do_update(index_elements=["address_id", "appliance_kind"],
                               set_={"last_serviced_at": order.updated_at}))
