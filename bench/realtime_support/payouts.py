"""Payouts kept running through the measurement, against the slow provider.

Before the run, `prepare` commits `count` repair orders, each accepted by a technician of its
own who never goes online, completed, held and captured: the settlement package's own event
handlers do the money steps, drained in this process against the Stripe-compatible server
directly, so set-up is quick. During the run, `finalize_reviews` announces their reviews at a
steady pace, as the ratings package would: each `ratings.review_finalized` event makes a
settlement pending transfer (a delivery on the worker's realtime lane), and the worker's
payouts job queues one transfer job each (background lane), whose provider calls (connected
account, lookup, transfer) go through the slow proxy.
"""

import asyncio
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

OPS_ACTOR = ("admin", "bench")


@dataclass(frozen=True)
class Completed:
    order_id: uuid.UUID
    technician_id: uuid.UUID
    customer_id: uuid.UUID


async def prepare(count: int, center: tuple[float, float], spread_deg: float, run: str, password_hash: str,
                  rng: random.Random, concurrency: int = 8) -> list[Completed]:
    from sqlmodel import select

    from app.wiring import register_handlers
    from dispatch import service as dispatch
    from dispatch.models import Account, Address, Certification, Customer, Technician
    from kit.db import session_scope
    from kit.events import drain
    from kit.geo import point

    register_handlers()  # this process delivers the set-up's events itself (drain)
    ops = dispatch.Actor(*OPS_ACTOR)
    now = datetime.now(UTC)
    pairs = []
    async with session_scope() as session:
        accounts, technicians, customers, extras = [], [], [], []
        for i in range(count):
            tech_account = Account(role="technician", email=f"payee-{run}-{i}@bench.local", password_hash=password_hash,
                                   display_name=f"payee {i}")
            customer_account = Account(role="customer", email=f"payer-{run}-{i}@bench.local",
                                       password_hash=password_hash, display_name=f"payer {i}")
            technician = Technician(account_id=tech_account.id, name=f"payee {i}", phone="+86 13800000000",
                                    onboarding="active")
            customer = Customer(account_id=customer_account.id, name=f"payer {i}", phone="+86 13900000000")
            lon, lat = (center[0] + rng.uniform(-spread_deg, spread_deg), center[1] + rng.uniform(-spread_deg, spread_deg))
            address = Address(customer_id=customer.id, label="bench", line=f"payer {i}", location=point(lon, lat))
            certification = Certification(technician_id=technician.id, kind="repair", number=f"P-{run}-{i}",
                                          issuer="bench", valid_from=now - timedelta(days=1),
                                          valid_until=now + timedelta(days=30), status="verified", decided_at=now)
            accounts += [tech_account, customer_account]
            technicians.append(technician)
            customers.append(customer)
            extras += [address, certification]
            pairs.append((technician.id, customer.id, address.id))
        session.add_all(accounts)
        await session.flush()
        session.add_all(technicians + customers)
        await session.flush()
        session.add_all(extras)
    gate = asyncio.Semaphore(concurrency)

    async def one(technician_id: uuid.UUID, customer_id: uuid.UUID, address_id: uuid.UUID) -> Completed:
        async with gate, session_scope() as session:
            order = await dispatch.create_order(session, customer_id=customer_id, address_id=address_id,
                                                kind="repair", actor=ops)
            await dispatch.transition(session, order.id, "start_matching", ops)
            await dispatch.transition(session, order.id, "offer", ops)
            await dispatch.transition(session, order.id, "accept", ops, set_values={"technician_id": technician_id})
            for action in ("depart", "arrive", "start_service", "complete"):
                await dispatch.transition(session, order.id, action, ops,
                                          payload={"report_id": "bench"} if action == "complete" else None)
            await drain(session)  # the hold at acceptance, the capture at completion
            return Completed(order.id, technician_id, customer_id)

    done = await asyncio.gather(*(one(*pair) for pair in pairs))
    from settlement.models import Payment

    async with session_scope() as session:
        captured = set((await session.exec(select(Payment.order_id).where(Payment.status == "captured"))).all())
    return [c for c in done if c.order_id in captured]


async def finalize_reviews(completed: list[Completed], seconds: float) -> int:
    """Each order's review finalized, spread evenly over `seconds`."""
    from kit.db import session_scope
    from kit.events import publish_event
    from ratings.events import ReviewFinalized

    spacing = seconds / max(1, len(completed))
    for c in completed:
        async with session_scope() as session:
            await publish_event(session, ReviewFinalized(
                order_id=c.order_id, review_id=uuid.uuid4(), technician_id=c.technician_id,
                customer_id=c.customer_id, stars=5, automatic=True, finalized_at=datetime.now(UTC)))
        await asyncio.sleep(spacing)
    return len(completed)


async def figures(window: tuple[float, float]) -> dict:
    """What the payouts did, overall and inside the measured window (unix seconds)."""
    from sqlalchemy import text

    from kit.db import session_scope

    start, end = (datetime.fromtimestamp(t, UTC) for t in window)
    async with session_scope() as session:
        row = (await session.execute(text("""
            SELECT count(*),
                   count(*) FILTER (WHERE status = 'transfer_pending'),
                   count(*) FILTER (WHERE status = 'transferred'),
                   count(*) FILTER (WHERE transferred_at BETWEEN :start AND :end),
                   count(*) FILTER (WHERE transfer_requested_at <= :end
                                    AND (transferred_at IS NULL OR transferred_at >= :start))
            FROM settlement_settlement"""), {"start": start, "end": end})).one()
    return {"settlements": row[0], "pending_transfer_at_end": row[1], "transferred": row[2],
            "transferred_in_window": row[3], "transfers_in_flight_during_window": row[4]}
