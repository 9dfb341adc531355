"""Telemetry rules -> faults -> orders.

At most one open fault per device and kind, enforced by the partial unique index on
`meters_fault`: the rule inserts with ON CONFLICT DO NOTHING, and only the insert that wins
creates an order; a repeat annotates the open fault. A condition that clears is noted on the
fault, which stays open until its order ends (`on_order_status_changed`).

Methane alarms are per home: under a transaction-level advisory lock on the address, a new
alarm fault joins the address's open emergency order (another detector's, or the customer's
own "I smell gas" order) instead of opening one. The safety notice goes out with the first
alarm of an order, and each valve at the address gets one close command per order.
"""

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select, text, update
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import service as dispatch_service
from kit.config import Settings
from kit.events import handles, publish_event
from dispatch.events import OrderStatusChanged
from dispatch.safety import GAS_LEAK_STEPS
from meters.events import FaultDetected, SafetyAdviceIssued
from meters.models import Device, Fault, ValveCommand
from meters.protocols import cjt188
from meters.telemetry import LATEST_KEY, DeviceInfo, Telemetry

log = structlog.get_logger(__name__)

ACTOR = dispatch_service.Actor.system("meters")

# fault kind -> (order kind, priority, order source)
ORDER_FOR_FAULT: dict[str, tuple[str, str, str]] = {
    "methane_alarm": ("emergency_leak", "emergency", "alarm"),
    "valve_abnormal": ("meter_fault", "urgent", "meter"),
    "tamper": ("meter_fault", "urgent", "meter"),
    "battery_low": ("meter_fault", "routine", "meter"),
    "meter_stopped": ("meter_fault", "routine", "meter"),
    "comm_lost": ("meter_fault", "routine", "meter"),
    "suspected_leak": ("suspected_leak", "urgent", "meter"),
}
_DESCRIPTION = {
    "methane_alarm": "燃气报警器报警 / Methane detector alarm",
    "valve_abnormal": "阀门异常 / Valve abnormal",
    "tamper": "拆卸或磁干扰报警 / Tamper or magnetic attack",
    "battery_low": "电池欠压 / Battery low",
    "meter_stopped": "表具疑似停走 / Meter appears stopped",
    "comm_lost": "设备通讯中断 / Device stopped reporting",
    "suspected_leak": "用气异常，疑似泄漏 / Unusual consumption, suspected leak",
}
# The text is for delivery channels that cannot translate (SMS); the apps show the steps
# (dispatch.safety.GAS_LEAK_STEPS, sent beside it), and this text says the same in the same order.
SAFETY_ADVICE = {
    "zh": "燃气报警器检测到燃气泄漏。请立即离开房间；不要使用明火，不要开关任何电器；不要在室内打电话；"
          "在安全的情况下打开门窗通风；如能够到，关闭燃气总阀。抢险人员正在赶来。",
    "en": "Your gas detector has detected a leak. Leave the room now; no flames, and do not operate any "
          "switches; make no phone calls indoors; open doors and windows to ventilate if it is safe; "
          "close the main gas valve at the meter if you can reach it. An emergency crew is on its way.",
}
# Instant conditions, re-evaluated on every reading (the rest come from periodic checks).
INSTANT_KINDS = ("methane_alarm", "valve_abnormal", "battery_low", "tamper")
_ORDER_ENDED = frozenset({"completed", "settled", "cancelled", "unfulfilled"})


@dataclass
class Outcome:
    order_ids: list[uuid.UUID] = field(default_factory=list)
    commands: list[tuple[str, str, uuid.UUID]] = field(default_factory=list)
    # device id -> instant fault kinds active in its latest reading
    active: dict[uuid.UUID, list[str]] = field(default_factory=dict)


def conditions(device: DeviceInfo, t: Telemetry, settings: Settings) -> list[str]:
    found = []
    if device.kind == "detector":
        over = (settings.meters_lel_alarm_pct is not None and t.lel_pct is not None
                and t.lel_pct >= settings.meters_lel_alarm_pct)
        if t.alarm or over:
            found.append("methane_alarm")
    if t.valve == "abnormal":
        found.append("valve_abnormal")
    if t.battery_low:
        found.append("battery_low")
    if t.tamper:
        found.append("tamper")
    return found


async def evaluate(
    session: AsyncSession, readings: list[tuple[DeviceInfo, Telemetry]], previous: dict[uuid.UUID, dict[str, Any]],
    *, settings: Settings, now: datetime,
) -> Outcome:
    """Readings must be new (not duplicates) and sorted by read_at."""
    outcome = Outcome()
    active = {device_id: list(state.get("active", [])) for device_id, state in previous.items()}
    newest = {device_id: state["read_at"] for device_id, state in previous.items()}
    for device, t in readings:
        found = conditions(device, t, settings)
        if not found and not active.get(device.id):
            # Nothing to raise or clear: most readings. Readings are sorted, so not noting this
            # one in `newest` changes no later comparison.
            continue
        for kind in found:
            await raise_fault(session, device, kind, now=now, outcome=outcome,
                              evidence={"read_at": t.read_at.isoformat(), "lel_pct": t.lel_pct, "valve": t.valve})
        if newest.get(device.id, "") > t.read_at.isoformat():
            continue  # a late report neither clears nor sets the current state
        newest[device.id] = t.read_at.isoformat()
        for kind in set(active.get(device.id, ())) - set(found):
            await clear_fault(session, device.id, kind, now=now, read_at=t.read_at)
        if found or device.id in active:
            active[device.id] = found
    outcome.active = active
    return outcome


async def raise_fault(
    session: AsyncSession, device: DeviceInfo, kind: str, *, now: datetime, outcome: Outcome | None = None,
    evidence: dict[str, Any] | None = None,
) -> uuid.UUID | None:
    """Open a fault and its order (or join the home's open emergency), or annotate the fault
    already open. Returns a new order id."""
    note = {"at": now.isoformat(), "event": "raised", **(evidence or {})}
    fault_id = (await session.execute(text("""
        INSERT INTO meters_fault (id, device_id, fault_kind, occurrences, notes, opened_at, last_seen_at)
        VALUES (:id, :device_id, :kind, 1, CAST(:notes AS jsonb), :now, :now)
        ON CONFLICT (device_id, fault_kind) WHERE closed_at IS NULL DO NOTHING
        RETURNING id
    """), {"id": uuid.uuid4(), "device_id": device.id, "kind": kind, "notes": _json([note]), "now": now})).scalar()
    if fault_id is None:
        await session.execute(text("""
            UPDATE meters_fault SET occurrences = occurrences + 1, last_seen_at = :now, cleared_at = NULL,
                   notes = notes || CAST(:note AS jsonb)
            WHERE device_id = :device_id AND fault_kind = :kind AND closed_at IS NULL
        """), {"now": now, "device_id": device.id, "kind": kind, "note": _json([{**note, "event": "repeated"}])})
        return None
    if kind == "methane_alarm":
        return await _methane_alarm(session, device, fault_id, now=now, outcome=outcome)
    return await _open_order(session, device, kind, fault_id, now=now, outcome=outcome)


async def _open_order(
    session: AsyncSession, device: DeviceInfo, kind: str, fault_id: uuid.UUID, *, now: datetime,
    outcome: Outcome | None,
) -> uuid.UUID:
    order_kind, priority, source = ORDER_FOR_FAULT[kind]
    order = await dispatch_service.create_order(
        session, customer_id=device.customer_id, address_id=device.address_id, kind=order_kind, actor=ACTOR,
        description=f"{_DESCRIPTION[kind]} ({device.external_id})", priority=priority, source=source, now=now)
    await session.execute(update(Fault).where(Fault.id == fault_id).values(order_id=order.id))
    await _fault_detected(session, device, kind, fault_id, order.id, joined=False)
    if outcome is not None:
        outcome.order_ids.append(order.id)
    return order.id


async def _fault_detected(
    session: AsyncSession, device: DeviceInfo, kind: str, fault_id: uuid.UUID, order_id: uuid.UUID, *, joined: bool,
) -> None:
    await publish_event(session, FaultDetected(
        fault_id=fault_id, fault_kind=kind, device_id=device.id, order_id=order_id, customer_id=device.customer_id,
        address_id=device.address_id, joined=joined))
    log.info("meters.fault_opened", device=device.external_id, kind=kind, order_id=str(order_id), joined=joined)


async def _methane_alarm(
    session: AsyncSession, device: DeviceInfo, fault_id: uuid.UUID, *, now: datetime, outcome: Outcome | None,
) -> uuid.UUID | None:
    """One emergency per home: join the address's open emergency order or open one. Returns
    the order id when it is new."""
    home_order = await dispatch_service.open_home_emergency(session, device.address_id)
    order_id = home_order.id if home_order is not None else None
    new_order = None
    if order_id is None:
        order_id = new_order = await _open_order(session, device, "methane_alarm", fault_id, now=now, outcome=outcome)
    else:
        await session.execute(update(Fault).where(Fault.id == fault_id).values(order_id=order_id))
        await _fault_detected(session, device, "methane_alarm", fault_id, order_id, joined=True)
    earlier_alarm = (await session.execute(select(Fault.id).where(
        Fault.order_id == order_id, Fault.fault_kind == "methane_alarm", Fault.id != fault_id).limit(1))).scalar()
    if earlier_alarm is None:  # the first alarm of this emergency: the household is told once
        await publish_event(session, SafetyAdviceIssued(
            customer_id=device.customer_id, address_id=device.address_id, device_id=device.id, order_id=order_id,
            text=SAFETY_ADVICE, steps=list(GAS_LEAK_STEPS)))
    commands = await close_valves(session, device.address_id, fault_id=fault_id, order_id=order_id, now=now)
    if outcome is not None:
        outcome.commands.extend(commands)
    return new_order


async def close_valves(
    session: AsyncSession, address_id: uuid.UUID, *, fault_id: uuid.UUID | None, now: datetime,
    order_id: uuid.UUID | None = None,
) -> list[tuple[str, str, uuid.UUID]]:
    """Queue a close for every valve at the address not yet closed for this order: a CJ/T 188
    A017 frame for its concentrator, or a platform command for an NB-IoT valve. Returns the
    concentrator commands (external id, frame hex, command id) to write at once."""
    query = select(Device.id, Device.external_id, Device.meter_type, Device.protocol).where(
        Device.address_id == address_id, Device.has_valve.is_(True), Device.protocol.in_(("cjt188", "nbiot")))
    if order_id is not None:
        commanded = (select(ValveCommand.id).join(Fault, Fault.id == ValveCommand.fault_id)
                     .where(ValveCommand.device_id == Device.id, ValveCommand.command == "close",
                            Fault.order_id == order_id))
        query = query.where(~commanded.exists())
    queued = []
    for device_id, external_id, meter_type, protocol in (await session.execute(query)).all():
        if protocol == "nbiot":
            session.add(ValveCommand(device_id=device_id, fault_id=fault_id, command="close", channel="platform",
                                     frame_hex="", next_attempt_at=now, created_at=now))
            continue
        frame = cjt188.valve_request(external_id, open_valve=False, meter_type=meter_type).hex()
        command = ValveCommand(device_id=device_id, fault_id=fault_id, command="close", frame_hex=frame, created_at=now)
        session.add(command)
        queued.append((external_id, frame, command.id))
    await session.flush()
    return queued


async def clear_fault(session: AsyncSession, device_id: uuid.UUID, kind: str, *, now: datetime, read_at: datetime) -> None:
    await session.execute(text("""
        UPDATE meters_fault SET cleared_at = :now, notes = notes || CAST(:note AS jsonb)
        WHERE device_id = :device_id AND fault_kind = :kind AND closed_at IS NULL AND cleared_at IS NULL
    """), {"now": now, "device_id": device_id, "kind": kind,
           "note": _json([{"at": now.isoformat(), "event": "cleared", "read_at": read_at.isoformat()}])})


@handles(OrderStatusChanged)
async def on_order_status_changed(session: AsyncSession, event: OrderStatusChanged) -> None:
    """A fault closes when its order completes or ends otherwise; idempotent."""
    if event.to not in _ORDER_ENDED:
        return
    await session.execute(update(Fault).where(
        Fault.order_id == event.order_id, Fault.closed_at.is_(None)).values(closed_at=func.now()))


async def check_comm_lost(session: AsyncSession, redis: Any, *, now: datetime, factor: float) -> list[uuid.UUID]:
    """Devices silent for more than `factor` x their interval get a comm_lost fault.

    Last report from Redis; the readings table stands in for devices Redis does not know
    (a flushed cache must not raise alarms for every device), then the install date.
    """
    devices = (await session.execute(select(
        Device.id, Device.kind, Device.external_id, Device.customer_id, Device.address_id, Device.has_valve,
        Device.meter_type, Device.report_interval_s, Device.installed_at))).all()
    if not devices:
        return []
    states = await redis.mget([LATEST_KEY.format(d.id) for d in devices])
    last: dict[uuid.UUID, datetime] = {}
    unknown = []
    for d, state in zip(devices, states, strict=True):
        if state:
            last[d.id] = datetime.fromisoformat(json.loads(state)["received_at"])
        else:
            unknown.append(d.id)
    if unknown:
        rows = await session.execute(select(text("device_id"), func.max(text("received_at")))
                                     .select_from(text("meters_reading"))
                                     .where(text("device_id = ANY(:ids)")).group_by(text("device_id")),
                                     {"ids": unknown})
        last.update({row[0]: row[1] for row in rows})
    orders, reporting = [], []
    for d in devices:
        seen = last.get(d.id, d.installed_at)
        if now - seen <= timedelta(seconds=d.report_interval_s * factor):
            reporting.append(d.id)
            continue
        order_id = await raise_fault(session, DeviceInfo(*d[:8]), "comm_lost", now=now,
                                     evidence={"last_report_at": seen.isoformat()})
        if order_id is not None:
            orders.append(order_id)
    await session.execute(text("""
        UPDATE meters_fault SET cleared_at = :now, notes = notes || CAST(:note AS jsonb)
        WHERE device_id = ANY(:ids) AND fault_kind = 'comm_lost' AND closed_at IS NULL AND cleared_at IS NULL
    """), {"now": now, "ids": reporting, "note": _json([{"at": now.isoformat(), "event": "cleared"}])})
    return orders


def _json(value: Any) -> str:
    return json.dumps(value)
