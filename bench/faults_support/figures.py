"""The suite's figures, computed after the system settled: from the database, the provider's
own records, the actors' observations, and the platform's audit and reconcile commands."""

import asyncio
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import asyncpg

from bench.faults_support.actors import Observed
from bench.faults_support.provider import list_all
from bench.faults_support.stack import ROOT, STRIPE_KEY, Stack

END_STATES = ("settled", "cancelled", "unfulfilled")
# A technician's hold on the order ends with these moves (he may accept it again later).
RELEASES = ("offer_lapsed", "preempt", "reschedule", "assign", "cancel", "mark_unfulfilled")


def _customer_status_texts() -> tuple[str, ...]:
    """The states a customer is told about, as the handler table has them."""
    from dispatch import handlers

    return tuple(handlers._STATUS_TEXT)


def resting(status: str) -> bool:
    """Ended, or waiting on the customer (a payment that needs his attention)."""
    return status in END_STATES or "payment" in status


async def _rows(conn: asyncpg.Connection, sql: str, *args: object) -> list[asyncpg.Record]:
    return await conn.fetch(sql, *args)


async def unfinished_orders(conn: asyncpg.Connection) -> list[tuple[str, str, float]]:
    """(order, status, seconds it is overdue) of every order neither ended nor waiting on its
    customer. An order still looking for a technician is overdue from its SLA deadline (by then
    it must have an offer or be marked unfulfilled); any other from its last change."""
    rows = await _rows(conn, """
        SELECT o.id::text AS id, o.status,
               CASE WHEN o.status IN ('created', 'matching')
                    THEN extract(epoch FROM now() - o.sla_deadline)
                    ELSE extract(epoch FROM now() - greatest(o.updated_at, coalesce(max(e.created_at), o.created_at)))
               END AS idle_s
        FROM dispatch_order o LEFT JOIN dispatch_order_event e ON e.order_id = o.id
        GROUP BY o.id""")
    return [(r["id"], r["status"], round(float(r["idle_s"]), 1)) for r in rows if not resting(r["status"])]


async def double_accepts(conn: asyncpg.Connection, observed: Observed) -> set[str]:
    """Two technicians holding one order at once: in the order's own log, in commit order (event
    ids; a pre-emption is stamped with its round's start, which may precede the accept it
    undoes), an accept by another technician while one holds it; or accept acks the log does not
    back (more technicians told "yours" than accepts recorded)."""
    rows = await _rows(conn, """SELECT e.order_id::text AS order_id, e.action, o.technician_id::text AS technician_id
                                FROM dispatch_order_event e
                                LEFT JOIN matching_offer o ON e.action = 'accept' AND o.id = (e.payload->>'offer_id')::uuid
                                WHERE e.action = 'accept' OR e.action = ANY($1::text[]) ORDER BY e.id""", list(RELEASES))
    found: set[str] = set()
    holder: dict[str, str | None] = {}
    accepts: Counter[str] = Counter()
    for r in rows:
        order_id = r["order_id"]
        if r["action"] != "accept":
            holder[order_id] = None
            continue
        accepts[order_id] += 1
        if holder.get(order_id) not in (None, r["technician_id"]):
            found.add(order_id)
        holder[order_id] = r["technician_id"]
    for order_id, acks in observed.accept_acks.items():
        if len({who for _, who in acks}) > accepts[order_id]:
            found.add(order_id)
    return found


async def doubles_in_ledger(conn: asyncpg.Connection, kind: str) -> set[str]:
    rows = await _rows(conn, """SELECT order_id::text AS order_id FROM settlement_ledger_entry
                                WHERE kind = $1 AND order_id IS NOT NULL GROUP BY order_id HAVING count(*) > 1""", kind)
    return {r["order_id"] for r in rows}


async def provider_doubles(stripe_base: str) -> tuple[set[str], set[str]]:
    """Orders captured more than once, and paid out by more than one live transfer, at the provider."""
    charges = await list_all(stripe_base, STRIPE_KEY, "/v1/charges")
    transfers = await list_all(stripe_base, STRIPE_KEY, "/v1/transfers")
    captured = Counter(c.get("transfer_group") for c in charges if c.get("captured") and c.get("transfer_group"))
    live = Counter(t.get("transfer_group") for t in transfers
                   if t.get("transfer_group") and t["amount"] - t.get("amount_reversed", 0) > 0)
    return {g for g, n in captured.items() if n > 1}, {g for g, n in live.items() if n > 1}


async def lost_notifications(conn: asyncpg.Connection) -> list[str]:
    """Every status change the customer is told about, every offer and every payout has its row."""
    told = _customer_status_texts()
    lost = await _rows(conn, """
        SELECT DISTINCT 'order:' || e.order_id || ':' || e.to_status AS what
        FROM dispatch_order_event e
        JOIN dispatch_order o ON o.id = e.order_id
        JOIN dispatch_customer c ON c.id = o.customer_id
        WHERE e.to_status = ANY($1::text[])
          AND NOT EXISTS (SELECT 1 FROM dispatch_notification n
                          WHERE n.account_id = c.account_id AND n.kind = 'order_' || e.to_status
                            AND n.payload->>'order_id' = e.order_id::text)""", list(told))
    offers = await _rows(conn, """
        SELECT 'offer:' || f.id AS what FROM matching_offer f JOIN dispatch_technician t ON t.id = f.technician_id
        WHERE NOT EXISTS (SELECT 1 FROM dispatch_notification n WHERE n.account_id = t.account_id AND n.kind = 'offer'
                          AND n.payload->>'offer_id' = f.id::text)""")
    payouts = await _rows(conn, """
        SELECT 'payout:' || e.order_id AS what FROM dispatch_order_event e
        JOIN dispatch_order o ON o.id = e.order_id JOIN dispatch_technician t ON t.id = o.technician_id
        WHERE e.to_status = 'settled' AND e.payload ? 'payout_minor'
          AND NOT EXISTS (SELECT 1 FROM dispatch_notification n WHERE n.account_id = t.account_id AND n.kind = 'payout'
                          AND n.payload->>'order_id' = e.order_id::text)""")
    return [r["what"] for r in [*lost, *offers, *payouts]]


async def dead_letters(conn: asyncpg.Connection) -> tuple[dict[str, int], list[str]]:
    """Dead letters wherever the platform keeps them (tables with `dead_lettered_at`, a
    `state`/`status` of dead, jobs the engine holds as failed), and why, for the report."""
    found: dict[str, int] = {}
    columns = await _rows(conn, """SELECT table_name, column_name FROM information_schema.columns
                                   WHERE table_schema = 'public'
                                     AND column_name IN ('dead_lettered_at', 'state', 'status')""")
    by_table: dict[str, set[str]] = defaultdict(set)
    for c in columns:
        by_table[c["table_name"]].add(c["column_name"])
    for table, names in sorted(by_table.items()):
        if "dead_lettered_at" in names:
            condition = "dead_lettered_at IS NOT NULL"
        elif table == "pgqueuer":
            condition = "status::text = 'failed'"
        else:
            column = "state" if "state" in names else "status"
            condition = f"{column}::text IN ('dead', 'dead_letter', 'dead_lettered')"
        count = await conn.fetchval(f'SELECT count(*) FROM "{table}" WHERE {condition}')
        if count:
            found[table] = count
    why: list[str] = []
    if "kit_delivery" in found:
        why = [f"{r['n']}x {r['topic']} -> {r['subscriber']}: {r['last_error']}" for r in await _rows(conn, """
            SELECT topic, subscriber, left(coalesce(last_error, ''), 160) AS last_error, count(*) AS n
            FROM kit_delivery WHERE state = 'dead' GROUP BY 1, 2, 3 ORDER BY n DESC""")]
    return found, why


def _waits_by_design(status: str, env: dict[str, str]) -> float:
    """A completed order rests until its customer reviews or the review window closes (then the
    30 s finalization job moves it): that wait is the product's, not a stall."""
    if status == "completed":
        return float(env.get("GASDISPATCH_REVIEW_WINDOW_H", "0")) * 3600 + 30
    return 0.0


def command_ok(env: dict[str, str], *args: str) -> tuple[bool, str]:
    done = subprocess.run([sys.executable, "-m", "app", *args], check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    return done.returncode == 0, (done.stdout + done.stderr)[-3000:]


async def compute(stack: Stack, env: dict[str, str], observed: Observed, *, runs: int, started: datetime,
                  stall_s: float, faults: Counter) -> tuple[dict, dict]:
    """(the JSON figures, the details behind them for the table and the logs)."""
    conn = await asyncpg.connect(host="127.0.0.1", port=stack.pg_port, user="postgres", database="gasdispatch")
    try:
        orders = await conn.fetchval("SELECT count(*) FROM dispatch_order")
        states = {r["status"]: r["n"] for r in await _rows(
            conn, "SELECT status, count(*) AS n FROM dispatch_order GROUP BY status ORDER BY status")}
        unfinished = await unfinished_orders(conn)
        stuck = [o for o in unfinished if o[2] > stall_s + _waits_by_design(o[1], env)]
        accepts = await double_accepts(conn, observed)
        captures = await doubles_in_ledger(conn, "capture")
        transfers = await doubles_in_ledger(conn, "transfer")
        provider_captures, provider_transfers = await provider_doubles(stack.stripe_base)
        lost = await lost_notifications(conn)
        dead, dead_why = await dead_letters(conn)
    finally:
        await conn.close()
    # In a thread: the provider proxy answering the reconcile runs on this event loop.
    audit_ok, audit_out = await asyncio.to_thread(command_ok, env, "audit", "verify")
    window = (started - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+00:00"), \
        (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    reconcile_ok, reconcile_out = await asyncio.to_thread(command_ok, env, "settlement", "reconcile",
                                                          "--from", window[0], "--to", window[1])
    figures = {
        "runs": runs, "orders": orders, "final_states": states, "stuck": len(stuck),
        "double_accepts": len(accepts), "double_captures": len(captures | provider_captures),
        "double_transfers": len(transfers | provider_transfers), "lost_notifications": len(lost),
        "dead_letters": sum(dead.values()), "audit_ok": audit_ok, "reconcile_ok": reconcile_ok,
        "faults_injected": dict(sorted(faults.items())),
    }
    details = {"stuck": stuck, "unfinished": unfinished, "double_accepts": sorted(accepts), "double_captures": sorted(captures | provider_captures),
               "double_transfers": sorted(transfers | provider_transfers), "lost": lost, "dead_letters": dead, "dead_letter_causes": dead_why,
               "audit": audit_out, "reconcile": reconcile_out}
    return figures, details
