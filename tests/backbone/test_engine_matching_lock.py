"""Matching per city under a PostgreSQL advisory lock held on its own connection: never two
holders, fencing in the batch's transaction, takeover within seconds of a holder's death."""

import asyncio
import os
import signal
import subprocess
import sys
import time

from app.worker import MATCHER_LOCK, CityLock
from kit.db import session_scope
from kit.jobs import asyncpg_dsn


async def test_two_matchers_for_one_city_never_both_hold_it(engine) -> None:  # noqa: ANN001
    first, second = CityLock("lock-test-a"), CityLock("lock-test-a")
    other_city = CityLock("lock-test-b")
    try:
        assert await first.hold()
        assert not await second.hold()
        assert await other_city.hold()  # cities are independent
        async with session_scope() as session:
            assert await first.fence(session)
            async with session_scope() as racing:  # the loser's batch is fenced off
                assert not await second.fence(racing)
        await first.release()
        assert await second.hold()
        async with session_scope() as session:
            assert await second.fence(session)
        assert not await first.hold()
    finally:
        for lock in (first, second, other_city):
            await lock.release()


async def test_a_holder_that_lost_its_lock_unknowingly_is_fenced_off(engine) -> None:  # noqa: ANN001
    holder = CityLock("lock-test-c")
    try:
        assert await holder.hold()
        # The lock is gone while the holder still believes it holds it (a lost connection that
        # its client has not noticed yet looks the same to the database).
        await holder.connection.fetchval("SELECT pg_advisory_unlock($1, hashtext($2))", MATCHER_LOCK, "lock-test-c")
        assert holder.held
        async with session_scope() as session:
            assert not await holder.fence(session)
    finally:
        await holder.release()


async def test_a_killed_holder_is_taken_over_within_seconds(engine) -> None:  # noqa: ANN001
    script = ("import asyncio, asyncpg, sys\n"
              "async def main():\n"
              f"    c = await asyncpg.connect({asyncpg_dsn()!r})\n"
              f"    await c.fetchval('SELECT pg_advisory_lock($1, hashtext($2))', {MATCHER_LOCK}, 'lock-test-d')\n"
              "    print('held', flush=True)\n"
              "    await asyncio.sleep(600)\n"
              "asyncio.run(main())\n")
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    successor = CityLock("lock-test-d")
    try:
        assert process.stdout.readline().strip() == "held"
        assert not await successor.hold()
        os.kill(process.pid, signal.SIGKILL)
        killed = time.monotonic()
        while not await successor.hold():
            assert time.monotonic() - killed < 5, "no takeover within 5 s"
            await asyncio.sleep(0.2)
    finally:
        process.kill()
        process.wait(timeout=10)
        await successor.release()


async def test_two_workers_split_the_cities_and_one_takes_them_all_when_the_other_is_gone(engine) -> None:  # noqa: ANN001
    from app.worker import MatcherShare, match_once

    cities = [f"share-test-{i}" for i in range(4)]
    shares = [MatcherShare(), MatcherShare()]
    for share in shares:
        share.cities, share.workers = len(cities), 2
        share.locks = [CityLock(city) for city in cities]
    try:
        for _ in range(2):  # each worker tries every city, in turn
            for share in shares:
                for lock in share.locks:
                    await match_once(lock, share)
        assert [share.held() for share in shares] == [2, 2]
        held = [{lock.city for lock in share.locks if lock.held} for share in shares]
        assert held[0].isdisjoint(held[1]) and held[0] | held[1] == set(cities)

        for lock in shares[1].locks:  # the second worker dies: its cities are free
            await lock.release()
        shares[0].workers = 1
        for lock in shares[0].locks:
            await match_once(lock, shares[0])
        assert shares[0].held() == 4

        shares[0].workers = 2  # a worker joins again: the first lets cities go down to its share
        for lock in shares[0].locks:
            await match_once(lock, shares[0])
        assert shares[0].held() == 2
    finally:
        for share in shares:
            for lock in share.locks:
                await lock.release()
