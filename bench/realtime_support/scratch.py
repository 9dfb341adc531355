"""A database of the bench's own for one run: created on the configured PostgreSQL server,
migrated, stamped with commit times, dropped at the end; and the run's Redis keys forgotten.

Payouts write the append-only ledger, whose rows nobody may delete, so the bench cannot clean
up after itself in a shared database; a scratch one is dropped whole instead.

Commit stamps: a deferred constraint trigger on orders and offers inserts the row's id with
`clock_timestamp()` when its transaction commits (deferred triggers run inside COMMIT, just
before the commit record is flushed), so latency "from the commit" is read off the database
with no help from the application. The stamp precedes the end of the commit by the WAL flush,
so figures measured from it are, if anything, a little longer than from the commit itself.
"""

import asyncio
import subprocess
import sys
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]

COMMIT_STAMPS = """
CREATE TABLE bench_commit_stamp (kind text NOT NULL, row_id uuid NOT NULL,
                                 committed_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION bench_stamp_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_commit_stamp (kind, row_id) VALUES (TG_ARGV[0], NEW.id);
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER bench_order_committed AFTER INSERT ON dispatch_order
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bench_stamp_commit('order');
CREATE CONSTRAINT TRIGGER bench_offer_committed AFTER INSERT ON matching_offer
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bench_stamp_commit('offer');
"""


def _dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def scratch_url(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def create(url: str, name: str, env: dict[str, str], log: Path) -> str:
    """The scratch database, migrated to every branch head, with commit stamps; its URL."""
    admin = await asyncpg.connect(_dsn(url, "postgres"), timeout=30)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    scratch = scratch_url(url, name)
    migrated = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "app", "migrate"], check=False, cwd=ROOT,
                                       capture_output=True, text=True,
                                       env={**env, "GASDISPATCH_DATABASE_URL": scratch})
    log.write_text(migrated.stdout + migrated.stderr)
    if migrated.returncode != 0:
        raise RuntimeError(f"migrating the scratch database failed; see {log}")
    connection = await asyncpg.connect(_dsn(scratch), timeout=30)
    try:
        await connection.execute(COMMIT_STAMPS)
    finally:
        await connection.close()
    return scratch


async def drop(url: str, name: str) -> None:
    admin = await asyncpg.connect(_dsn(url, "postgres"), timeout=30)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def commit_stamps(url: str, kind: str) -> dict[str, float]:
    """row id -> commit time (unix seconds, the machine's wall clock as PostgreSQL reads it)."""
    connection = await asyncpg.connect(_dsn(url), timeout=30)
    try:
        rows = await connection.fetch("SELECT row_id, extract(epoch FROM committed_at) AS at "
                                      "FROM bench_commit_stamp WHERE kind = $1", kind)
    finally:
        await connection.close()
    return {str(r["row_id"]): float(r["at"]) for r in rows}


def database_name(url: str) -> str:
    return make_url(url).database or "gasdispatch"



async def forget_cities(cities: list[str], technician_ids: list[str]) -> None:
    """The run's Redis keys: its cities' (hash tag `{city}`) and its technicians' (presence,
    city, orders whose customers follow them); replays and rate limits expire on their own."""
    from kit.fanout import active_orders_key, presence_key
    from kit.redis import get_redis
    from matching.index import technician_city_key

    redis = get_redis()
    keys = [key(t) for t in technician_ids for key in (presence_key, technician_city_key, active_orders_key)]
    for city in cities:
        keys += [key async for key in redis.scan_iter(match=f"*{{{city}}}*", count=1000)]
    for key in keys:  # one by one: on a cluster the keys live on different nodes
        await redis.delete(key)
