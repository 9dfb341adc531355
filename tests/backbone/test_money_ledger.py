"""The ledger without a global lock: chains per order, a daily anchor over the tips, an audit
that names what was changed."""

import asyncio
import uuid
from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel.ext.asyncio.session import AsyncSession

from settlement import ledger
from settlement.audit import verify_chain
from settlement.ledger import Posting


def _hold(amount: int) -> list[Posting]:
    return [Posting(ledger.CUSTOMER_HOLDS, amount, "CNY"), Posting(ledger.ORDER_LIABILITY, -amount, "CNY")]


async def _post(session: AsyncSession, order_id: uuid.UUID, amount: int = 100) -> ledger.LedgerEntry:
    entry, _ = await ledger.post(session, business_key=f"test:{uuid.uuid4()}", kind="test", order_id=order_id,
                                 postings=_hold(amount))
    return entry


async def test_posts_for_unrelated_orders_do_not_wait_while_posts_to_one_order_do(committed_sessions) -> None:
    busy_order, other_order = uuid.uuid4(), uuid.uuid4()
    async with committed_sessions() as holding:
        await _post(holding, busy_order)  # its transaction stays open, holding the chain's tip
        async with committed_sessions() as other:
            await other.exec(text("SET LOCAL lock_timeout = '2s'"))
            entry = await asyncio.wait_for(_post(other, other_order), timeout=5)
            await other.commit()
            assert entry.chain == f"order:{other_order}" and entry.chain_seq == 1
        async with committed_sessions() as same:
            await same.exec(text("SET LOCAL lock_timeout = '500ms'"))
            with pytest.raises(DBAPIError, match="lock timeout"):
                await _post(same, busy_order)
        await holding.commit()


async def test_audit_names_a_tampered_entry_in_one_chain_and_passes_otherwise(session: AsyncSession) -> None:
    first_order, second_order = uuid.uuid4(), uuid.uuid4()
    a1 = await _post(session, first_order, 100)
    a2 = await _post(session, first_order, 200)
    b1 = await _post(session, second_order, 300)
    assert (a2.prev_hash, a2.chain_seq, b1.prev_hash) == (a1.content_hash, 2, ledger.GENESIS_HASH)
    await ledger.anchor(session, date.max)
    clean = await verify_chain(session)
    assert clean.ok, clean.broken

    await session.exec(text("SET LOCAL session_replication_role = replica"))  # as a superuser could
    await session.exec(text("UPDATE settlement_ledger_posting SET amount_minor = amount_minor + 1 "
                            "WHERE entry_id = :id AND amount_minor > 0").bindparams(id=a1.id))
    await session.exec(text("UPDATE settlement_ledger_posting SET amount_minor = amount_minor - 1 "
                            "WHERE entry_id = :id AND amount_minor < 0").bindparams(id=a1.id))
    await session.exec(text("SET LOCAL session_replication_role = origin"))
    report = await verify_chain(session)
    assert [b.get("entry_id") for b in report.broken] == [str(a1.id)]
    assert report.broken[0]["problems"] == ["content does not match its hash"]


async def test_the_anchor_detects_a_chain_cut_short_after_anchoring(session: AsyncSession) -> None:
    order_id = uuid.uuid4()
    await _post(session, order_id)
    tip = await _post(session, order_id)
    anchor = await ledger.anchor(session, date.max)
    assert anchor.tips[f"order:{order_id}"] == [2, tip.content_hash]
    await session.exec(text("SET LOCAL session_replication_role = replica"))
    await session.exec(text("DELETE FROM settlement_ledger_posting WHERE entry_id = :id").bindparams(id=tip.id))
    await session.exec(text("DELETE FROM settlement_ledger_entry WHERE id = :id").bindparams(id=tip.id))
    await session.exec(text("SET LOCAL session_replication_role = origin"))
    report = await verify_chain(session)
    assert report.broken == [{"anchor": date.max.isoformat(),
                              "problems": [f"anchored tip order:{order_id}#2 is missing"]}]
