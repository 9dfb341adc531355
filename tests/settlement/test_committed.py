"""Scenarios that need committed data: a worker killed mid-transfer, racing workers, and a
ledger row edited behind the application's back."""

import asyncio
import os
import signal
import subprocess
import sys

import pytest
from sqlalchemy import text
from sqlmodel import select

from dispatch.models import Order
from settlement import ledger, service
from settlement.models import LedgerEntry, Settlement
from tests.settlement.support import CommittedDatabase, settled_up_to_transfer


def _cli(db: CommittedDatabase, *args: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "GASDISPATCH_DATABASE_URL": db.url}
    env.pop("GASDISPATCH_FAULT", None)
    if fault:
        env["GASDISPATCH_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "app", *args], env=env, capture_output=True, text=True,
                          timeout=120)


async def _pending_settlement(db: CommittedDatabase) -> Settlement:
    order_id = await settled_up_to_transfer(db)
    async with db.session() as session:
        s = await service.compute_settlement(session, order_id=order_id, review_id="r", stars=5)
        await session.commit()
    assert s.status == "transfer_pending"
    return s


@pytest.mark.parametrize("fault", ["after_provider_call", "after_ledger_write"])
async def test_worker_killed_mid_transfer_pays_exactly_once_after_resume(committed_db: CommittedDatabase, fault: str) -> None:
    s = await _pending_settlement(committed_db)
    crashed = await asyncio.to_thread(_cli, committed_db, "settlement", "run-once", fault=fault)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr

    async with committed_db.session() as session:
        assert (await session.get(Settlement, s.id)).status == "transfer_pending"
        assert (await session.exec(select(LedgerEntry).where(LedgerEntry.kind == "transfer"))).all() == []

    resumed = await asyncio.to_thread(_cli, committed_db, "settlement", "resume")
    assert resumed.returncode == 0, resumed.stderr

    transfers = await asyncio.to_thread(lambda: [
        e for e in committed_db.gateway.events() if e["type"] == "transfer.created"])
    assert len(transfers) == 1
    async with committed_db.session() as session:
        done = await session.get(Settlement, s.id)
        assert done.status == "transferred" and done.transfer_id == transfers[0]["data"]["object"]["id"]
        entry = (await session.exec(select(LedgerEntry).where(LedgerEntry.kind == "transfer"))).one()
        assert entry.provider_object_id == done.transfer_id
        postings = await ledger.postings_of(session, entry.id)
        assert ledger.Posting(ledger.PROVIDER_BALANCE, -transfers[0]["data"]["object"]["amount"], "CNY") in postings
        assert (await session.get(Order, s.order_id)).status == "settled"
    await committed_db.engine.dispose()


async def test_two_workers_racing_on_one_order_make_one_settlement_and_one_transfer(committed_db: CommittedDatabase) -> None:
    order_id = await settled_up_to_transfer(committed_db)

    async def compute(stars: int) -> Settlement:
        async with committed_db.session() as session:
            s = await service.compute_settlement(session, order_id=order_id, review_id=f"r{stars}", stars=stars)
            await session.commit()
            return s

    first, second = await asyncio.gather(compute(5), compute(4))
    assert first.id == second.id and first.stars == second.stars

    async def pay() -> bool:
        async with committed_db.session() as session:
            paid = await service.transfer_settlement(session, first.id, committed_db.gateway)
            await session.commit()
            return paid

    results = await asyncio.gather(pay(), pay())
    assert sorted(results) == [False, True]
    async with committed_db.session() as session:
        settlements = (await session.exec(select(Settlement).where(Settlement.order_id == order_id))).all()
        entries = (await session.exec(select(LedgerEntry.kind).where(LedgerEntry.order_id == order_id))).all()
    assert len(settlements) == 1
    assert sorted(entries) == ["capture", "hold", "settlement", "transfer"]
    await committed_db.engine.dispose()


async def test_editing_a_ledger_row_makes_audit_verify_fail_and_name_the_entry(committed_db: CommittedDatabase) -> None:
    await _pending_settlement(committed_db)
    assert (await asyncio.to_thread(_cli, committed_db, "audit", "verify")).returncode == 0
    async with committed_db.session() as session:
        with pytest.raises(Exception, match="append-only"):
            await session.exec(text("UPDATE settlement_ledger_posting SET amount_minor = amount_minor * 2"))
        await session.rollback()
        victim = (await session.exec(select(LedgerEntry).where(LedgerEntry.kind == "capture"))).one()
        # Tampering as a superuser would: triggers off for this session only.
        await session.exec(text("SET session_replication_role = replica"))
        await session.exec(text("UPDATE settlement_ledger_posting SET amount_minor = amount_minor + 100 "
                                "WHERE entry_id = :id AND amount_minor > 0 AND account = 'provider_balance'"
                                ).bindparams(id=victim.id))
        await session.commit()
    result = await asyncio.to_thread(_cli, committed_db, "audit", "verify")
    assert result.returncode == 1
    assert str(victim.id) in result.stdout and str(victim.id) in result.stderr
    await committed_db.engine.dispose()
