"""Settlement arithmetic, pure and in integers.

Rounding rule: a percentage is held in basis points and applied as amount * bps / 10000
rounded half away from zero to the minor unit. The platform fee (percentage of the base plus
a fixed part) is never more than base + adjustment, so a payout is never negative. The quality
adjustment is a percentage of the base chosen by the finalized review's stars; a star count
without a percentage (None) holds the settlement for an operations review.

The payout is paid out of the customer's capture, so it can never exceed the base: an
adjustment is bounded by -100 % below and by the platform fee's percentage above (then
adjustment <= percentage fee <= fee), and ``compute`` refuses any result above the base.

Cancellation policy: free until a technician accepted the order, and within the grace minutes
after his acceptance; then ``cancellation_fee_accepted_minor`` until he sets out and
``cancellation_fee_minor`` once he is en route or further. The fee is never more than the
customer's hold (it is captured from it) and ``cancellation_technician_bps`` of it is his
compensation, the rest platform revenue.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from settlement.errors import PayoutExceedsCapture, RulesOutOfBounds

ROUNDING_RULE = "bps applied as amount*bps/10000, rounded half away from zero to the minor unit"


@dataclass(frozen=True)
class Rules:
    version: int
    platform_fee_bps: int
    platform_fee_fixed_minor: int
    adjustment_bps_by_stars: Mapping[str, int | None]
    minimum_payout_minor: int
    payout_schedule: str
    cancellation_fee_minor: int
    cancellation_fee_accepted_minor: int = 0
    cancellation_free_minutes: int = 0
    cancellation_technician_bps: int = 10_000


# Order states in which a cancellation is charged: the technician holds the job.
ACCEPTED_FEE_STATES = frozenset({"accepted"})
DISPATCHED_FEE_STATES = frozenset({"en_route", "arrived", "in_service"})


@dataclass(frozen=True)
class CancellationFee:
    fee_minor: int
    technician_share_minor: int
    platform_share_minor: int
    free_until: datetime | None  # the end of the grace after acceptance, while it lasts


def cancellation_fee(rules: Rules, *, status: str, accepted_at: datetime | None, now: datetime,
                     hold_minor: int) -> CancellationFee:
    """What cancelling costs now in ``status``; ``hold_minor`` is what can be captured."""
    free_until = accepted_at + timedelta(minutes=rules.cancellation_free_minutes) if accepted_at else None
    if status in DISPATCHED_FEE_STATES:
        fee, free_until = rules.cancellation_fee_minor, None
    elif status in ACCEPTED_FEE_STATES and not (free_until and now < free_until):
        fee, free_until = rules.cancellation_fee_accepted_minor, None
    else:
        fee = 0
        if status not in ACCEPTED_FEE_STATES:
            free_until = None
    fee = min(fee, max(hold_minor, 0))
    technician = split_cancellation_fee(rules, fee)
    return CancellationFee(fee, technician, fee - technician, free_until)


def split_cancellation_fee(rules: Rules, fee_minor: int) -> int:
    """The technician's share of a cancellation fee."""
    return min(apply_bps(fee_minor, rules.cancellation_technician_bps), fee_minor)


@dataclass(frozen=True)
class Computation:
    base_minor: int
    adjustment_minor: int
    fee_minor: int
    payout_minor: int
    held: bool
    arithmetic: dict[str, Any]


def apply_bps(amount_minor: int, bps: int) -> int:
    product = amount_minor * bps
    quotient, remainder = divmod(abs(product), 10_000)
    if 2 * remainder >= 10_000:
        quotient += 1
    return quotient if product >= 0 else -quotient


MIN_ADJUSTMENT_BPS = -10_000


def check_adjustment(platform_fee_bps: int, adjustment_bps: int | None) -> None:
    if adjustment_bps is not None and not MIN_ADJUSTMENT_BPS <= adjustment_bps <= platform_fee_bps:
        raise RulesOutOfBounds(
            f"adjustment {adjustment_bps} bps is outside {MIN_ADJUSTMENT_BPS}..{platform_fee_bps} (the platform fee)")


def compute(rules: Rules, *, base_minor: int, stars: int, adjustment_bps: int | None = None) -> Computation:
    """Payout for one order. ``adjustment_bps`` overrides the star table (an ops decision)."""
    if base_minor < 0:
        raise ValueError("base must not be negative")
    bps = adjustment_bps if adjustment_bps is not None else rules.adjustment_bps_by_stars.get(str(stars))
    inputs = {"rule_version": rules.version, "base_minor": base_minor, "stars": stars, "rounding": ROUNDING_RULE}
    if bps is None:
        return Computation(base_minor, 0, 0, 0, True, {**inputs, "held_for_review": True})
    adjustment = apply_bps(base_minor, bps)
    fee_percent = apply_bps(base_minor, rules.platform_fee_bps)
    fee = min(fee_percent + rules.platform_fee_fixed_minor, base_minor + adjustment)
    payout = base_minor + adjustment - fee
    if not 0 <= payout <= base_minor:
        raise PayoutExceedsCapture(f"payout {payout} is outside 0..{base_minor} (rule version {rules.version})")
    return Computation(base_minor, adjustment, fee, payout, False, {
        **inputs, "adjustment_bps": bps, "adjustment_minor": adjustment,
        "platform_fee_bps": rules.platform_fee_bps, "platform_fee_percent_minor": fee_percent,
        "platform_fee_fixed_minor": rules.platform_fee_fixed_minor, "fee_minor": fee,
        "payout_minor": payout, "formula": "payout = base + adjustment - min(fee% + fixed, base + adjustment)",
    })
