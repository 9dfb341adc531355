"""Reactions to events that people must hear about: socket pushes and notifications.

Each runs in the outbox relay's transaction; pushes go out after its commit. Handlers are
idempotent: notifications carry the event's dedupe key.
"""

import uuid
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from kit.events import handles, subscribe
from kit.geo import lonlat
from kit.fanout import account_channel, order_channel, push_after_commit
from dispatch.events import OrderStatusChanged
from dispatch.field.events import HazardFound, PriceChangeRejected, PriceChangeRequested
from dispatch.models import Customer, Order, Technician
from matching.events import OfferCreated, OfferWithdrawn
from meters.events import MaintenanceReminderDue, SafetyAdviceIssued
from dispatch import safety
from dispatch.notifications import notify
from dispatch.service import shared_event_reason
from dispatch.states import ACTIVE_JOB_STATES


_STATUS_TEXT = {
    "accepted": ("技术员已接单 / Technician on the way soon", "{name} accepted your order."),
    "en_route": ("技术员已出发 / Technician en route", "{name} is on the way."),
    "arrived": ("技术员已到达 / Technician arrived", "{name} has arrived. Verify him before opening the door."),
    "completed": ("服务已完成 / Service completed", "Your order is complete. Please rate the service."),
    "unfulfilled": ("暂无可用技术员 / No technician available", "We could not find a technician in time: {reason}"),
    "cancelled": ("订单已取消 / Order cancelled", "Order cancelled: {reason}"),
}


async def _account_of_customer(session: AsyncSession, customer_id: uuid.UUID) -> uuid.UUID | None:
    customer = await session.get(Customer, customer_id)
    return customer.account_id if customer else None


async def _technician(session: AsyncSession, technician_id: uuid.UUID | None) -> Technician | None:
    return await session.get(Technician, technician_id) if technician_id else None


@handles(OrderStatusChanged)
async def on_order_status_changed(session: AsyncSession, event: OrderStatusChanged) -> None:
    order = await session.get(Order, event.order_id)
    if order is None:
        return
    to = event.to
    technician_id = str(event.technician_id) if event.technician_id else None
    technician = await _technician(session, event.technician_id)
    # The order's socket reaches the customer: only the reasons he may read.
    push_after_commit(session, order_channel(order.id), "status", order_id=str(order.id), status=to,
                      action=event.action, technician_id=technician_id,
                      reason=shared_event_reason(event.action, event.reason))
    if technician is not None:
        kind = "order_cancelled" if to == "cancelled" else "job_updated"
        push_after_commit(session, account_channel(technician.account_id), kind, order_id=str(order.id),
                          status=to, reason=event.reason, reason_code=event.payload.get("reason_code"))
    await _tell_released_technician(session, order, event)
    if to == "settled" and technician is not None:
        amount = event.payload.get("payout_minor")
        if amount is not None:
            await notify(session, technician.account_id, "payout", "结算到账 / Payout sent",
                         f"{amount / 100:.2f} {order.currency} for order {str(order.id)[:8]}",
                         {"order_id": str(order.id), "amount_minor": amount, "currency": order.currency},
                         dedupe_key=f"payout:{order.id}")
    if to in _STATUS_TEXT:
        account_id = await _account_of_customer(session, order.customer_id)
        title, body = _STATUS_TEXT[to]
        if account_id is not None:
            await notify(session, account_id, f"order_{to}", title,
                         body.format(name=technician.name if technician else "", reason=event.reason or ""),
                         {"order_id": str(order.id)}, dedupe_key=f"order:{order.id}:{to}:{event.action}")


# The notification kind by the action that took the job from him; his app translates kind,
# action and reason_code (slugs) and shows a customer's own words beside them.
_RELEASE_KIND = {"cancel": "job_cancelled", "assign": "job_reassigned"}


def released_technician_id(event: OrderStatusChanged) -> uuid.UUID | None:
    """The technician a status change takes a job from: named in the event's payload (a reassign
    names the previous technician), or the one holding it when it leaves his hands otherwise than
    by completion (cancel, reschedule, pre-emption)."""
    named = event.payload.get("released_technician_id") or event.payload.get("previous_technician_id")
    if named:
        return uuid.UUID(str(named))
    if event.from_ in ACTIVE_JOB_STATES and event.to not in (*ACTIVE_JOB_STATES, "completed"):
        return event.technician_id
    return None


async def _tell_released_technician(session: AsyncSession, order: Order, event: OrderStatusChanged) -> None:
    technician = await _technician(session, released_technician_id(event))
    if technician is None:
        return
    details, action = event.payload, event.action
    fee = details.get("cancellation_fee") or {}
    share = fee.get("technician_share_minor")
    notice = {"order_id": str(order.id), "action": action, "status": event.to,
              "reason_code": details.get("reason_code"), "reason": event.reason,
              "compensation": {"amount_minor": share, "currency": fee["currency"]} if share else None}
    kind = _RELEASE_KIND.get(action, "job_released")
    title = {"job_cancelled": "订单已取消 / Job cancelled", "job_reassigned": "工单已改派 / Job reassigned"}.get(
        kind, "任务已撤回 / Job taken back")
    body = f"{order.kind} · {str(order.id)[:8]}: {event.reason or action}"
    if share:
        body += f" · 补偿 / compensation {share / 100:.2f} {fee['currency']}"
    await notify(session, technician.account_id, kind, title, body, notice,
                 dedupe_key=f"released:{order.id}:{technician.id}:{action}:{event.from_}:{event.to}")


def offer_summary(order: Order, offer_id: str, distance_m: float, eta_s: float, expires_at: str) -> dict[str, Any]:
    """What a technician sees of an offer: the area rounded to ~100 m, never the address."""
    lon, lat = lonlat(order.location) or (0.0, 0.0)
    return {
        "offer_id": offer_id, "order_id": str(order.id), "kind": order.kind, "priority": order.priority,
        "description": order.description, "area": {"type": "Point", "coordinates": [round(lon, 3), round(lat, 3)]},
        "distance_m": round(distance_m), "eta_min": max(1, round(eta_s / 60)), "expires_at": expires_at,
        "sla_deadline": order.sla_deadline.isoformat(),
    }


@handles(OfferCreated)
async def on_offer_created(session: AsyncSession, event: OfferCreated) -> None:
    technician = await _technician(session, event.technician_id)
    order = await session.get(Order, event.order_id)
    if technician is None or order is None:
        return
    offer = offer_summary(order, str(event.offer_id), event.distance_m, event.eta_s, event.expires_at.isoformat())
    # The offer itself reached the socket when matching committed it; this is the record.
    await notify(session, technician.account_id, "offer", "新派单 / New job offer",
                 f"{order.kind} · {offer['distance_m']} m · {offer['eta_min']} min", offer,
                 dedupe_key=f"offer:{event.offer_id}")


@handles(OfferWithdrawn)
async def on_offer_withdrawn(session: AsyncSession, event: OfferWithdrawn) -> None:
    technician = await _technician(session, event.technician_id)
    if technician is not None:
        push_after_commit(session, account_channel(technician.account_id), "offer_withdrawn",
                          offer_id=str(event.offer_id), order_id=str(event.order_id), reason=event.reason)


async def _notify_customer(session: AsyncSession, customer_id: uuid.UUID, kind: str, title: str, body: str,
                           payload: dict[str, Any], dedupe_key: str) -> None:
    account_id = await _account_of_customer(session, customer_id)
    if account_id is not None:
        await notify(session, account_id, kind, title, body, payload, dedupe_key=dedupe_key)


@handles(SafetyAdviceIssued)
async def on_safety_advice(session: AsyncSession, event: SafetyAdviceIssued) -> None:
    # Prose too carries the city's hotline: an SMS or a locked phone shows only the body.
    order = await session.get(Order, event.order_id)
    lines = await safety.hotlines(session, get_settings(), order.city_id if order else None)
    numbers = " / ".join(line["number"] for line in lines)
    await _notify_customer(session, event.customer_id, "alarm_safety_advice", "燃气报警 / Gas alarm",
                           f"{event.text['zh']}请到室外拨打：{numbers}\n{event.text['en']} From outside, call {numbers}.",
                           {**event.wire(), "hotlines": lines}, f"safety:{event.order_id}")


@handles(HazardFound)
async def on_hazard_found(session: AsyncSession, event: HazardFound) -> None:
    # The apps word it from the kind and the payload's slugs (category, severity) and deadline.
    await _notify_customer(session, event.customer_id, "hazard_found", "发现安全隐患 / Hazard found", "",
                           event.wire(), f"hazard:{event.hazard_id}")


@handles(PriceChangeRequested)
async def on_price_change_requested(session: AsyncSession, event: PriceChangeRequested) -> None:
    # The customer's open order page asks for the approval at once.
    push_after_commit(session, order_channel(event.order_id), "price_change", order_id=str(event.order_id),
                      amount_minor=event.amount_minor, currency=event.currency)
    await _notify_customer(session, event.customer_id, "price_change", "价格变更待确认 / Price change to approve",
                           f"New price: {event.amount_minor / 100:.2f} {event.currency}", event.wire(),
                           f"price:{event.order_id}:{event.amount_minor}")


@handles(PriceChangeRejected)
async def on_price_change_rejected(session: AsyncSession, event: PriceChangeRejected) -> None:
    technician = await _technician(session, event.technician_id)
    if technician is None:
        return
    await notify(session, technician.account_id, "price_change_rejected", "价格变更被拒绝 / Price change rejected",
                 f"{event.amount_minor / 100:.2f} {event.currency}: the customer keeps the authorised price",
                 {"order_id": str(event.order_id), "price_change_id": str(event.price_change_id),
                  "amount_minor": event.amount_minor, "currency": event.currency,
                  "reason_code": "customer_rejected_price"},
                 dedupe_key=f"price_rejected:{event.price_change_id}")


@handles(MaintenanceReminderDue)
async def on_maintenance_reminder(session: AsyncSession, event: MaintenanceReminderDue) -> None:
    await _notify_customer(session, event.customer_id, "maintenance_reminder", "保养提醒 / Service reminder",
                           f"{event.appliance_kind}: {event.used_m3} m³ / {event.days_since_service} days "
                           f"since the last service. One tap to order: {event.order_kind}", event.wire(),
                           f"reminder:{event.address_id}:{event.appliance_kind}:{event.days_since_service}")


def register() -> None:
    subscribe("dispatch.order_status_changed", on_order_status_changed)
    subscribe("matching.offer_created", on_offer_created)
    subscribe("matching.offer_withdrawn", on_offer_withdrawn)
    subscribe("meters.safety_advice_issued", on_safety_advice)
    subscribe("meters.maintenance_reminder_due", on_maintenance_reminder)
    subscribe("field.hazard_found", on_hazard_found)
    subscribe("field.price_change_requested", on_price_change_requested)
    subscribe("field.price_change_rejected", on_price_change_rejected)
