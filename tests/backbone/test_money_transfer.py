"""A payout holds no database lock while the provider is called: a slow provider does not
make anyone else's transaction wait, and the payout still completes once."""

import asyncio
import threading
import uuid

from sqlalchemy import text
from sqlmodel import select

from dispatch import service as dispatch
from dispatch.models import Order
from kit.config import get_settings
from settlement import ledger, service
from settlement.ledger import Posting
from settlement.models import LedgerEntry, Settlement
from settlement.sandbox_gateway import SandboxGateway
from tests.factories import make_customer, make_technician
from tests.settlement.support import OPS


class SlowProvider(SandboxGateway):
    """The sandbox provider, answering a transfer only once the test lets it (a slow provider)."""

    def __init__(self) -> None:
        settings = get_settings()
        super().__init__(settings.database_url, settings.stripe_webhook_secret)
        self.calling, self.answer = threading.Event(), threading.Event()

    def transfer(self, **kwargs):
        self.calling.set()
        self.answer.wait(20)
        return super().transfer(**kwargs)


async def _pending_settlement(sessions, gateway: SandboxGateway) -> Settlement:
    async with sessions() as session:
        customer = await make_customer(session)
        technician = await make_technician(session)
        order = await dispatch.create_order(session, customer_id=customer.customer.id,
                                            address_id=customer.address.id, kind="repair", actor=OPS)
        for action in ("start_matching", "offer"):
            await dispatch.transition(session, order.id, action, OPS)
        await dispatch.transition(session, order.id, "accept", OPS, set_values={"technician_id": technician.technician.id})
        await service.place_hold(session, order.id, gateway)
        for action in ("depart", "arrive", "start_service", "complete"):
            await dispatch.transition(session, order.id, action, OPS,
                                      payload={"report_id": "r"} if action == "complete" else None)
        await service.capture_order(session, order.id, None, gateway)
        s = await service.compute_settlement(session, order_id=order.id, review_id="r", stars=4)
        await session.commit()
    assert s.status == "transfer_pending"
    return s


async def test_a_transfer_waiting_on_a_slow_provider_holds_no_lock(committed_sessions, redis) -> None:
    provider = SlowProvider()
    s = await _pending_settlement(committed_sessions, provider)

    async def pay() -> bool:
        async with committed_sessions() as session:
            paid = await service.transfer_settlement(session, s.id, provider)
            await session.commit()
            return paid

    paying = asyncio.create_task(pay())
    assert await asyncio.to_thread(provider.calling.wait, 20)
    try:
        async with committed_sessions() as other:
            await other.exec(text("SET LOCAL lock_timeout = '1s'"))
            await other.exec(select(Settlement).where(Settlement.id == s.id).with_for_update(nowait=True))
            await other.exec(text("SELECT 1 FROM settlement_connected_account WHERE technician_id = :t "
                                  "FOR UPDATE NOWAIT").bindparams(t=s.technician_id))
            # Another post on the same order's chain and the same technician's payable goes through.
            await ledger.post(other, business_key=f"test:{uuid.uuid4()}", kind="test", order_id=s.order_id,
                              postings=[Posting(ledger.technician_payable(s.technician_id), 1, s.currency),
                                        Posting(ledger.PROVIDER_BALANCE, -1, s.currency)])
            await other.rollback()
    finally:
        provider.answer.set()
    assert await asyncio.wait_for(paying, timeout=30)

    async with committed_sessions() as session:
        done = await session.get(Settlement, s.id)
        assert done.status == "transferred" and done.transfer_id is not None
        kinds = (await session.exec(select(LedgerEntry.kind).where(LedgerEntry.order_id == s.order_id))).all()
        assert sorted(kinds) == ["capture", "hold", "settlement", "transfer"]
        assert (await session.get(Order, s.order_id)).status == "settled"
        # paid once: a second run finds nothing to do
        assert await service.transfer_settlement(session, s.id, provider) is False
