"""The job engine's own round trips: a lane's pooled connection is released without asyncpg's
reset statement, and a burst of notices wakes a lane once."""

import asyncio

from pgqueuer.core import listeners

from kit import jobs


async def test_a_lane_connection_keeps_its_session_but_not_an_open_transaction() -> None:
    pool = await jobs.lane_pool(1)  # one connection: the second acquire gets the first one back
    try:
        async with pool.acquire() as connection:
            await connection.execute("SET application_name = 'lane-probe'")
            await connection.execute("BEGIN")
            await connection.execute("SELECT 1")
        async with pool.acquire() as connection:
            # No RESET ALL ran on release (one round trip saved per statement)...
            assert await connection.fetchval("SHOW application_name") == "lane-probe"
            # ...and asyncpg still rolled back the transaction left open.
            assert not connection.is_in_transaction()
    finally:
        await pool.close()


async def test_one_wake_up_covers_every_notice_already_received() -> None:
    assert listeners.PGNoticeEventListener is jobs.WakeUps  # what pgqueuer's QueueManager.run builds
    queue = jobs.WakeUps()
    for n in range(5):
        queue.put_nowait(n)
    assert await queue.get() == 0
    assert queue.empty()
    queue.put_nowait(5)  # a notice after the wake-up is kept for the next one
    assert await asyncio.wait_for(queue.get(), timeout=1) == 5
