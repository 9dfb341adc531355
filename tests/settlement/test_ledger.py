"""Ledger invariants, in code and in the database."""

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel.ext.asyncio.session import AsyncSession

from settlement import ledger
from settlement.audit import verify_chain
from settlement.ledger import Posting
from settlement.rules import Rules, apply_bps, compute

RULES = Rules(1, 1500, 0, {"5": 500, "4": 0, "3": -1000, "2": None, "1": None}, 0, "immediate", 0)


def _pair(amount: int, debit: str = ledger.PROVIDER_BALANCE, credit: str = ledger.ORDER_LIABILITY) -> list[Posting]:
    return [Posting(debit, amount, "CNY"), Posting(credit, -amount, "CNY")]


async def test_replaying_an_entry_is_a_no_op(session: AsyncSession) -> None:
    key = f"test:{uuid.uuid4()}"
    first, created = await ledger.post(session, business_key=key, kind="test", postings=_pair(100))
    again, created_again = await ledger.post(session, business_key=key, kind="test", postings=_pair(100))
    assert (created, created_again) == (True, False) and first.id == again.id == ledger.entry_id_for(key)


async def test_same_business_key_with_other_content_is_a_conflict(session: AsyncSession) -> None:
    key = f"test:{uuid.uuid4()}"
    await ledger.post(session, business_key=key, kind="test", postings=_pair(100))
    with pytest.raises(ledger.LedgerConflict):
        await ledger.post(session, business_key=key, kind="test", postings=_pair(101))


async def test_unbalanced_entry_is_refused(session: AsyncSession) -> None:
    with pytest.raises(ledger.UnbalancedEntry):
        await ledger.post(session, business_key=f"test:{uuid.uuid4()}", kind="test",
                          postings=[Posting(ledger.PROVIDER_BALANCE, 100, "CNY"), Posting(ledger.REFUNDS, -99, "CNY")])


async def test_database_refuses_an_unbalanced_entry_written_past_the_code(session: AsyncSession) -> None:
    entry, _ = await ledger.post(session, business_key=f"test:{uuid.uuid4()}", kind="test", postings=_pair(100))
    with pytest.raises(DBAPIError, match="does not balance"):
        async with session.begin_nested():
            await session.exec(text("INSERT INTO settlement_ledger_posting (entry_id, account, amount_minor, currency)"
                                    " VALUES (:id, 'refunds', 5, 'CNY')").bindparams(id=entry.id))
            await session.exec(text("SET CONSTRAINTS ALL IMMEDIATE"))


async def test_ledger_rows_cannot_be_updated_or_deleted(session: AsyncSession) -> None:
    entry, _ = await ledger.post(session, business_key=f"test:{uuid.uuid4()}", kind="test", postings=_pair(100))
    for statement in ("UPDATE settlement_ledger_entry SET memo = 'x' WHERE id = :id",
                      "DELETE FROM settlement_ledger_posting WHERE entry_id = :id"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with session.begin_nested():
                await session.exec(text(statement).bindparams(id=entry.id))


async def test_technician_payable_never_goes_negative(session: AsyncSession) -> None:
    payable = ledger.technician_payable(uuid.uuid4())
    await ledger.post(session, business_key=f"test:{uuid.uuid4()}", kind="test",
                      postings=_pair(500, debit=ledger.ORDER_LIABILITY, credit=payable))
    with pytest.raises(ledger.PayableWouldGoNegative):
        await ledger.post(session, business_key=f"test:{uuid.uuid4()}", kind="test",
                          postings=_pair(501, debit=payable, credit=ledger.PROVIDER_BALANCE))


async def test_a_provider_object_maps_to_one_entry(session: AsyncSession) -> None:
    object_id = f"tr_{uuid.uuid4().hex}"
    await ledger.post(session, business_key=f"test:{uuid.uuid4()}", kind="test", provider_object_id=object_id,
                      postings=_pair(100))
    with pytest.raises(ledger.LedgerConflict):
        await ledger.post(session, business_key=f"test:{uuid.uuid4()}", kind="test", provider_object_id=object_id,
                          postings=_pair(100))


async def test_entries_chain_and_the_chain_verifies(session: AsyncSession) -> None:
    first, _ = await ledger.post(session, business_key=f"test:{uuid.uuid4()}", kind="test", postings=_pair(1))
    second, _ = await ledger.post(session, business_key=f"test:{uuid.uuid4()}", kind="test", postings=_pair(2))
    assert second.prev_hash == first.content_hash
    assert (await verify_chain(session)).ok


def test_rounding_is_half_away_from_zero() -> None:
    assert (apply_bps(10, 500), apply_bps(30, 500), apply_bps(-30, 500), apply_bps(29, 500)) == (1, 2, -2, 1)


@pytest.mark.parametrize("stars,adjustment", [(5, 450), (4, 0), (3, -900)])
def test_quality_adjustment_follows_the_stars(stars: int, adjustment: int) -> None:
    result = compute(RULES, base_minor=9000, stars=stars)
    assert (result.adjustment_minor, result.fee_minor) == (adjustment, 1350)
    assert result.payout_minor == 9000 + adjustment - 1350


def test_two_stars_or_fewer_hold_the_settlement() -> None:
    assert compute(RULES, base_minor=9000, stars=2).held and compute(RULES, base_minor=9000, stars=1).held


def test_fee_never_makes_the_payout_negative() -> None:
    rules = Rules(2, 1500, 5000, {"3": -1000}, 0, "immediate", 0)
    result = compute(rules, base_minor=1000, stars=3)
    assert (result.fee_minor, result.payout_minor) == (900, 0)
