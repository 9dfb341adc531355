"""Settlement's domain errors; api/errors.py maps their bases (Conflict 409, InvalidInput 422)."""

from kit.errors import Conflict, InvalidInput


class RulesOutOfBounds(InvalidInput):
    """A quality adjustment must lie between -10000 bps and the platform fee's bps, so no payout exceeds the capture."""

    slug = "rules-out-of-bounds"


class PayoutExceedsCapture(Conflict):
    """The computed payout is more than what was captured from the customer."""

    slug = "payout-exceeds-capture"


class RefundExceedsCapture(Conflict):
    """More money back than is left of the capture."""

    slug = "refund-exceeds-capture"


class WebhookMismatch(Conflict):
    """The event names an object or an amount that the provider does not have."""

    slug = "webhook-mismatch"
