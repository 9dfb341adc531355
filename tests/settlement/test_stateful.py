"""Random sequences of orders, captures, settlements, transfers, refunds, disputes, duplicate and
out-of-order webhooks and retries, with every ledger invariant checked after every step."""

import asyncio
import os
import random
import uuid
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import service as dispatch
from kit.config import get_settings
from settlement import service, webhooks
from settlement.audit import verify_chain
from settlement.models import LedgerEntry, Payment, Settlement
from settlement.reconcile import reconcile
from settlement.sandbox_gateway import SandboxGateway
from tests.factories import make_customer, make_technician
from tests.settlement.support import OPS, assert_ledger_balances


class SettlementMachine(RuleBasedStateMachine):
    orders = Bundle("orders")

    @initialize()
    def open_transaction(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.engine = create_async_engine(os.environ["GASDISPATCH_DATABASE_URL"], poolclass=NullPool)
        self.gateway = SandboxGateway(os.environ["GASDISPATCH_DATABASE_URL"], get_settings().stripe_webhook_secret)
        self.started = datetime.now(timezone.utc)  # earlier examples' provider rows stay out
        self.undelivered: list[dict] = []
        self.seen_events: set[str] = set()
        self.disputed: dict[str, int] = {}  # charge -> disputed at the provider

        async def begin() -> None:
            self.connection = await self.engine.connect()
            self.outer = await self.connection.begin()
            self.session = AsyncSession(bind=self.connection, join_transaction_mode="create_savepoint",
                                        expire_on_commit=False)

        self.run(begin())

    def run(self, coro):  # noqa: ANN001, ANN201
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        if not hasattr(self, "loop"):
            return

        async def close() -> None:
            await self.session.close()
            await self.outer.rollback()
            await self.connection.close()
            await self.engine.dispose()

        self.run(close())
        self.loop.close()

    def _collect_events(self) -> None:
        for event in self.gateway.events(self.started):
            if event["id"] not in self.seen_events:
                self.seen_events.add(event["id"])
                self.undelivered.append(event)

    @rule(target=orders, price=st.integers(1, 20_000))
    def order_accepted(self, price: int) -> uuid.UUID:
        async def go() -> uuid.UUID:
            customer = await make_customer(self.session)
            technician = await make_technician(self.session)
            order = await dispatch.create_order(self.session, customer_id=customer.customer.id,
                                                address_id=customer.address.id, kind="repair", actor=OPS)
            await dispatch.transition(self.session, order.id, "start_matching", OPS)
            await dispatch.transition(self.session, order.id, "offer", OPS)
            await dispatch.transition(self.session, order.id, "accept", OPS, set_values={
                "technician_id": technician.technician.id, "price_estimate_minor": price})
            await service.place_hold(self.session, order.id, self.gateway)
            return order.id

        return self.run(go())

    @rule(order_id=orders, share=st.integers(0, 120), retry=st.booleans())
    def completed(self, order_id: uuid.UUID, share: int, retry: bool) -> None:
        async def go() -> None:
            order = await dispatch.get_order(self.session, order_id)
            if order.status != "accepted":
                return
            for action in ("depart", "arrive", "start_service", "complete"):
                await dispatch.transition(self.session, order_id, action, OPS,
                                          payload={"report_id": "test-report"} if action == "complete" else None)
            final = order.price_estimate_minor * share // 100
            for _ in range(2 if retry else 1):
                await service.capture_order(self.session, order_id, final, self.gateway)

        self.run(go())

    @rule(order_id=orders, stars=st.integers(1, 5))
    def review_finalized(self, order_id: uuid.UUID, stars: int) -> None:
        async def go() -> None:
            payment = await self.session.get(Payment, order_id)
            order = await dispatch.get_order(self.session, order_id)
            if order.status != "completed" or (payment is not None and payment.status != "captured"):
                return
            await service.compute_settlement(self.session, order_id=order_id, review_id="r", stars=stars)
            s = (await self.session.exec(select(Settlement).where(Settlement.order_id == order_id))).one()
            if s.status == "held":
                await service.release_held(self.session, s.id, adjustment_bps=0, decided_by="ops")

        self.run(go())

    @rule(times=st.integers(1, 2))
    def transfers_run(self, times: int) -> None:
        async def go() -> None:
            for _ in range(times):  # the second pass is a retry of finished work
                for settlement_id in await service.pending_transfer_ids(self.session):
                    try:
                        async with self.session.begin_nested():
                            await service.transfer_settlement(self.session, settlement_id, self.gateway)
                    except service.SettlementNotReady:
                        pass  # a refund or dispute the provider has and its webhook has not brought yet

        self.run(go())

    @rule(order_id=orders, percent=st.integers(1, 100), dispute=st.booleans())
    def money_back(self, order_id: uuid.UUID, percent: int, dispute: bool) -> None:
        async def go() -> None:
            payment = await self.session.get(Payment, order_id)
            if payment is None or payment.status != "captured":
                return
            # What is left at the provider: a dispute or refund whose webhook has not come yet is
            # already gone there, though not yet in our books.
            charge = self.gateway.retrieve_charge(payment.charge_id)
            left = min(payment.captured_minor - payment.refunded_minor,
                       charge.captured_minor - sum(refund.amount_minor for refund in charge.refunds)
                       - self.disputed.get(payment.charge_id, 0))
            amount = max(1, left * percent // 100)
            if left <= 0:
                return
            if dispute:
                self.gateway.open_dispute(charge_id=payment.charge_id, amount_minor=amount)
                self.disputed[payment.charge_id] = self.disputed.get(payment.charge_id, 0) + amount
            else:
                await service.refund_order(self.session, order_id, amount_minor=amount,
                                           request_key=uuid.uuid4().hex, gateway=self.gateway)

        self.run(go())

    @rule(order_id=orders, share=st.integers(0, 100))
    def technician_withdraws(self, order_id: uuid.UUID, share: int) -> None:
        async def go() -> None:
            s = (await self.session.exec(select(Settlement).where(Settlement.order_id == order_id))).first()
            if s is not None and s.connected_account_id:
                self.gateway.withdraw(account_id=s.connected_account_id, amount_minor=s.payout_minor * share // 100)

        self.run(go())

    @rule(seed=st.integers(0, 2**16), duplicate=st.booleans())
    def webhooks_delivered(self, seed: int, duplicate: bool) -> None:
        self._collect_events()
        batch = list(self.undelivered)
        random.Random(seed).shuffle(batch)  # out of order
        if duplicate:
            batch += batch[: len(batch) // 2 + 1]

        async def go() -> None:
            for event in batch:
                body, signature = self.gateway.signed(event)
                async with self.session.begin_nested():
                    await webhooks.receive(self.session, self.gateway, body, signature)

        self.run(go())
        self.undelivered = []

    @invariant()
    def ledger_invariants_hold(self) -> None:
        if not hasattr(self, "session"):
            return

        async def check() -> None:
            await assert_ledger_balances(self.session)
            for s in (await self.session.exec(select(Settlement))).all():
                transfers = (await self.session.exec(select(LedgerEntry).where(
                    LedgerEntry.settlement_id == s.id, LedgerEntry.kind == "transfer"))).all()
                assert len(transfers) == (1 if s.transfer_id else 0)
                assert s.clawback_minor <= s.payout_minor
            for p in (await self.session.exec(select(Payment))).all():
                assert 0 <= p.refunded_minor <= p.captured_minor <= p.held_minor
            assert (await verify_chain(self.session)).ok

        self.run(check())

    @precondition(lambda self: hasattr(self, "session"))
    @rule()
    def reconciles_once_webhooks_are_in(self) -> None:
        self.webhooks_delivered(seed=0, duplicate=False)
        found = self.run(reconcile(self.session, self.gateway, self.started,
                                   datetime.now(timezone.utc) + timedelta(seconds=1)))
        assert found == [], found


SettlementMachine.TestCase.settings = settings(
    max_examples=20, stateful_step_count=15, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def test_random_money_flows_keep_every_invariant(migrated_database: str) -> None:
    SettlementMachine.TestCase().runTest()
