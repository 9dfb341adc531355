"""Shared steps for the settlement tests: an order driven through the state machine, the
finalized-review event the ratings package publishes, and ledger checks."""

import uuid
from datetime import datetime, timezone

from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import service as dispatch
from kit.events import drain, publish
from dispatch.models import Order
from settlement import audit, ledger
from settlement.models import LedgerEntry, LedgerPosting
from tests.factories import CustomerCtx, TechnicianCtx, make_customer, make_technician

OPS = dispatch.Actor("admin", "ops")


async def new_order(client: AsyncClient, session: AsyncSession, kind: str = "repair",
                    technician: TechnicianCtx | None = None) -> tuple[Order, CustomerCtx, TechnicianCtx]:
    customer = await make_customer(session)
    technician = technician or await make_technician(session)
    response = await client.post("/v1/orders", headers=customer.headers,
                                 json={"kind": kind, "address_id": str(customer.address.id)})
    assert response.status_code == 201, response.text
    order = await session.get(Order, uuid.UUID(response.json()["id"]))
    return order, customer, technician


async def accept(session: AsyncSession, order: Order, technician: TechnicianCtx) -> None:
    await dispatch.transition(session, order.id, "start_matching", OPS)
    await dispatch.transition(session, order.id, "offer", OPS)
    await dispatch.transition(session, order.id, "accept", dispatch.Actor("technician", str(technician.account.id)),
                              set_values={"technician_id": technician.technician.id})
    await drain(session)


async def complete(session: AsyncSession, order: Order, final_price_minor: int | None = None) -> None:
    for action in ("depart", "arrive", "start_service"):
        await dispatch.transition(session, order.id, action, OPS)
    payload: dict = {"report_id": "test-report"}
    if final_price_minor is not None:
        payload["final_price_minor"] = final_price_minor
    await dispatch.transition(session, order.id, "complete", OPS, payload=payload)
    await drain(session)


async def finalize_review(session: AsyncSession, order: Order, stars: int) -> None:
    await publish(session, "ratings.review_finalized", {
        "order_id": str(order.id), "review_id": str(uuid.uuid4()), "technician_id": str(order.technician_id),
        "customer_id": str(order.customer_id), "stars": stars, "automatic": False,
        "finalized_at": datetime.now(timezone.utc).isoformat()})
    await drain(session)


async def assert_ledger_balances(session: AsyncSession) -> None:
    """Every entry sums to zero per currency, no technician payable is negative and the
    hash chains verify (what `gasdispatch audit verify` checks)."""
    rows = (await session.exec(select(LedgerPosting.entry_id, LedgerPosting.currency, LedgerPosting.amount_minor))).all()
    totals: dict = {}
    for entry_id, currency, amount in rows:
        totals[(entry_id, currency)] = totals.get((entry_id, currency), 0) + amount
    assert all(v == 0 for v in totals.values()), totals
    for (account, _), amount in (await ledger.balances(session)).items():
        if account.startswith("technician_payable:"):
            assert amount <= 0, (account, amount)
    verdict = await audit.verify_chain(session)
    assert verdict.ok, verdict


async def entries_of(session: AsyncSession, order_id: uuid.UUID) -> list[str]:
    rows = (await session.exec(select(LedgerEntry.kind).where(LedgerEntry.order_id == order_id)
                               .order_by(LedgerEntry.seq))).all()
    return list(rows)


class CommittedDatabase:
    """A fresh migrated database whose data is really committed (for subprocesses and races)."""

    def __init__(self, url: str) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        from kit.config import get_settings
        from settlement.sandbox_gateway import SandboxGateway

        self.url = url
        self.engine = create_async_engine(url)
        self.gateway = SandboxGateway(url, get_settings().stripe_webhook_secret)

    def session(self) -> AsyncSession:
        return AsyncSession(self.engine, expire_on_commit=False)


async def settled_up_to_transfer(db: CommittedDatabase, stars: int = 5) -> uuid.UUID:
    """Commit an order that is completed, captured and has a transfer_pending settlement."""
    from settlement import service

    async with db.session() as session:
        customer = await make_customer(session)
        technician = await make_technician(session)
        order = await dispatch.create_order(session, customer_id=customer.customer.id,
                                            address_id=customer.address.id, kind="repair", actor=OPS)
        await dispatch.transition(session, order.id, "start_matching", OPS)
        await dispatch.transition(session, order.id, "offer", OPS)
        await dispatch.transition(session, order.id, "accept", OPS, set_values={"technician_id": technician.technician.id})
        await service.place_hold(session, order.id, db.gateway)
        for action in ("depart", "arrive", "start_service", "complete"):
            await dispatch.transition(session, order.id, action, OPS,
                                      payload={"report_id": "test-report"} if action == "complete" else None)
        await service.capture_order(session, order.id, None, db.gateway)
        await session.commit()
        return order.id
