"""Adaptive batching (issue 17): which of a round's waiting orders are offered now and which wait
for others to batch with.

A batch only pays when orders compete for the same technicians; without contention its window
is pure delay. So, per round: while the free slots around the waiting orders are at least
AMPLE_SUPPLY per order, an order none of whose best technicians another order wants
(`assign.uncontended`) goes at once to the free technician who gets there first
(`assign.by_arrival`: greedy's choice, but for what it would cost his booked visits); a
contended one waits until it is `window_s` old, the window growing with the measured contention
up to MAX_WINDOW_S, then goes through the batch. When supply is not ample every order is
batched in every round: the orders outnumber the technicians anyway, and the round's cadence is
the only window.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from matching.assign import Pairs, assignment, batch, by_arrival, eligible_pairs, uncontended
from matching.model import Assignment, MatchingConfig, OrderView, TechnicianView

if TYPE_CHECKING:
    from matching.values import ValueTable

AMPLE_SUPPLY = 2.0  # free slots per waiting order that count as ample
MAX_WINDOW_S = 10.0  # the longest a contended order waits while supply is ample


@dataclass(frozen=True)
class Split:
    now: list[OrderView]  # offered in this round
    held: list[OrderView]  # contended, younger than the window
    window_s: float
    alone: frozenset[str] = frozenset()  # ids of `now` nobody competes for while supply is ample


def window_s(waiting: int, free_slots: int) -> float:
    """0 s without demand, MAX_WINDOW_S once demand reaches the edge of ample supply."""
    if waiting == 0:
        return 0.0
    return MAX_WINDOW_S * min(1.0, AMPLE_SUPPLY * waiting / max(free_slots, 1))


def split(orders: Sequence[OrderView], candidates: Mapping[str, Sequence[TechnicianView]], now: datetime,
          config: MatchingConfig, pairs: Pairs | None = None) -> Split:
    """`candidates`: each order's technicians as the round would assign them (reserves held back)."""
    found = {t.id: t for group in candidates.values() for t in group}.values()
    free = sum(t.free_slots for t in found if t.status == "online" and not t.reserved and t.free_in_s <= 0)
    if free < AMPLE_SUPPLY * len(orders):
        return Split(list(orders), [], 0.0)
    alone = set(uncontended(orders, candidates, now, config, pairs=pairs))
    window = window_s(len(orders), free)
    due = {o.id for o in orders if o.id in alone or (now - o.created_at).total_seconds() >= window}
    return Split([o for o in orders if o.id in due], [o for o in orders if o.id not in due], window, frozenset(alone))


def assign_round(orders: Sequence[OrderView], candidates: Mapping[str, Sequence[TechnicianView]], now: datetime,
                 config: MatchingConfig, values: ValueTable | None = None) -> tuple[list[Assignment], Split]:
    """A round's offers: the uncontended orders of an ample moment to whoever free arrives first,
    the other offered orders through the batch (which may keep one for a technician finishing a
    job), on what the first ones left."""
    if not orders:
        return [], Split([], [], 0.0)
    pairs = eligible_pairs(orders, candidates, now, config)
    part = split(orders, candidates, now, config, pairs)
    position = {o.id: i for i, o in enumerate(orders)}
    taken: Counter[str] = Counter()
    out = []
    alone = [o for o in part.now if o.id in part.alone]
    ranked = by_arrival(alone, candidates, now, config, pairs.of([position[o.id] for o in alone]))
    for order in alone:
        tech = next((t for t in ranked[order.id] if t.free_slots > taken[t.id]), None)
        if tech is not None:
            taken[tech.id] += 1
            out.append(assignment(order, tech, now, config))
    rest = [o for o in part.now if o.id not in part.alone]
    out += batch(rest, candidates, now, config, values, pairs.of([position[o.id] for o in rest]).less(taken))
    return out, part
