"""The escalation ladder and emergency readiness, pure: the live engine and the simulator both
ask these functions what to do next.

Ladder: an order nobody has accepted yet is offered in rounds; round r goes to the K_r
nearest eligible technicians at once within radius R_r (the last round repeats), the first
accept wins and the others are withdrawn. A technician who let an offer of the order lapse
may be offered it again once the cooldown has passed. Past each alert threshold the
operations console hears about it, once.

Readiness: each area keeps a floor of free emergency-certified technicians (from its
emergency rate and the SLA) that routine work may not take, and idle
emergency technicians are hinted towards areas below their floor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from kit.config import EscalationLadder, default_escalation_ladders

EMERGENCY_SKILL = "emergency"


@dataclass(frozen=True, slots=True)
class Ladder:
    offers_per_round: tuple[int, ...] = (1,)
    round_radius_m: tuple[float, ...] = ()  # empty: the default radius in every round
    cooldown_s: float = math.inf  # never
    alert_after_s: tuple[tuple[float, str], ...] = ()  # (seconds unaccepted, level)
    until_deadline: bool = False  # keep offering until the SLA deadline (no attempt limit)

    def round(self, number: int, default_radius_m: float) -> tuple[int, float]:
        """(K, radius) of round `number` (1-based); past the last round the last repeats."""
        k = self.offers_per_round[min(number, len(self.offers_per_round)) - 1]
        radius = self.round_radius_m[min(number, len(self.round_radius_m)) - 1] if self.round_radius_m else default_radius_m
        return max(1, k), radius

    @classmethod
    def of(cls, setting: EscalationLadder) -> Ladder:
        cooldown = math.inf if setting.cooldown_s is None else setting.cooldown_s
        return cls(tuple(setting.offers_per_round), tuple(setting.round_radius_m), cooldown,
                   tuple((float(a), str(level)) for a, level in setting.alert_after_s), setting.until_deadline)


def ladders(settings: Mapping[str, EscalationLadder] | None = None) -> dict[str, Ladder]:
    """The ladders by priority (the settings' defaults unless given)."""
    return {p: Ladder.of(s) for p, s in (settings or default_escalation_ladders()).items()}


# No escalation: one technician per offer, a lapsed technician never again, no alerts.
FLAT = Ladder(cooldown_s=math.inf)


def may_reoffer(ladder: Ladder, lapsed_at: datetime, now: datetime) -> bool:
    """A technician who let this order's offer lapse at `lapsed_at` may be offered it again."""
    return (now - lapsed_at).total_seconds() >= ladder.cooldown_s


def due_alerts(ladder: Ladder, created_at: datetime, now: datetime,
               raised: Iterable[float]) -> list[tuple[float, str]]:
    """Thresholds passed and not yet alerted, as (threshold_s, level)."""
    waited = (now - created_at).total_seconds()
    done = set(raised)
    return [(after, level) for after, level in ladder.alert_after_s if waited >= after and after not in done]


def reserve_floor(emergencies_per_hour: float, sla_min: float, cover_probability: float) -> int:
    """Free emergency technicians an area keeps: enough that the emergencies arriving within
    one SLA (Poisson at the area's rate) all find one with `cover_probability`. An area where
    none arrives within an SLA that often keeps none: pre-emption and repositioning cover it."""
    if emergencies_per_hour <= 0:
        return 0
    mean = emergencies_per_hour * sla_min / 60
    n, term = 0, math.exp(-mean)
    total = term
    while total < cover_probability:
        n += 1
        term *= mean / n
        total += term
    return n


def uncovered(free_emergency: Mapping[str, int], floors: Mapping[str, int]) -> list[str]:
    """Areas below their floor, the largest shortfall first."""
    short = [(floors[a] - free_emergency.get(a, 0), a) for a in floors if free_emergency.get(a, 0) < floors[a]]
    return [a for _, a in sorted(short, key=lambda x: (-x[0], x[1]))]


def reposition_hints(idle: Sequence[tuple[str, str | None]], free_emergency: Mapping[str, int],
                     floors: Mapping[str, int]) -> list[tuple[str, str]]:
    """(technician id, area) for idle emergency technicians to move towards uncovered areas:
    taken only from areas above their floor (or outside every area), one per missing technician."""
    spare = dict(free_emergency)
    hints = []
    gaps = {a: floors[a] - free_emergency.get(a, 0) for a in uncovered(free_emergency, floors)}
    for tech_id, home in idle:
        target = next((a for a, gap in gaps.items() if gap > 0 and a != home), None)
        if target is None:
            break
        if home is not None and spare.get(home, 0) - 1 < floors.get(home, 0):
            continue
        if home is not None:
            spare[home] -= 1
        gaps[target] -= 1
        hints.append((tech_id, target))
    return hints

