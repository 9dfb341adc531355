"""Calling the household without learning its number: the technician asks, a relay rings both
phones and bridges them (in China, a privacy-number (隐私号, AXB) service the utility contracts).
Neither number leaves the server; the API answers only that the call was requested.

The relay is a port: the wiring plugs in the utility's (`use_relay`); the default writes the
request to the log, which is what an install without telephony can honestly do."""

import uuid
from dataclasses import dataclass
from typing import Protocol

import structlog
from limits import parse_many
from redis.asyncio import Redis
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.addresses import ON_THE_JOB
from dispatch.models import Customer, Order, Technician
from kit import ratelimit
from kit.config import get_settings
from kit.errors import NotFound, ServiceUnavailable

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CallRequest:
    order_id: uuid.UUID
    caller_role: str
    caller_phone: str
    callee_role: str
    callee_phone: str


class ContactRelay(Protocol):
    name: str

    async def connect(self, call: CallRequest) -> None:
        """Rings both parties and bridges them; raises when the call cannot be placed."""


def masked(phone: str) -> str:
    digits = [c for c in phone if c.isdigit()]
    return "*" * max(0, len(digits) - 4) + "".join(digits[-4:])


class LoggingRelay:
    """Writes the request to the log (numbers masked): operations see who asked to reach whom."""

    name = "log"

    async def connect(self, call: CallRequest) -> None:
        log.info("contact.call_requested", order_id=str(call.order_id), caller_role=call.caller_role,
                 caller=masked(call.caller_phone), callee_role=call.callee_role, callee=masked(call.callee_phone))


_relay: ContactRelay = LoggingRelay()


def use_relay(relay: ContactRelay) -> None:
    global _relay
    _relay = relay


def relay() -> ContactRelay:
    return _relay


async def call_customer(session: AsyncSession, redis: Redis, order_id: uuid.UUID, technician: Technician) -> str:
    """The technician on the job asks to be put through to the household; returns the relay's name.
    Only while the job is his and under way; a few times per order, so a phone is not rung on end."""
    order = await session.get(Order, order_id)
    if order is None or order.technician_id != technician.id or order.status not in ON_THE_JOB:
        raise NotFound("no such job")
    await ratelimit.take(redis, parse_many(get_settings().contact_rate), "contact", str(order_id),
                         detail="too many calls for this job; try again later")
    customer = await session.get(Customer, order.customer_id)
    assert customer is not None
    call = CallRequest(order_id=order.id, caller_role="technician", caller_phone=technician.phone,
                       callee_role="customer", callee_phone=customer.phone)
    try:
        await _relay.connect(call)
    except Exception as exc:  # the utility's telephony is a provider: down is a 503 to retry, not a 500
        log.warning("contact.relay_failed", order_id=str(order.id), relay=_relay.name, error=type(exc).__name__)
        raise ServiceUnavailable("contact-relay") from exc
    return _relay.name
