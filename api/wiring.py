"""The wiring every process needs before it handles events: each package's subscriptions,
and the ports one package offers another."""

from dispatch import handlers as dispatch_handlers
from dispatch import ops as dispatch_ops
from matching import service as matching_service
from meters import service as meters_service
from ratings import service as ratings_service
from settlement import handlers as settlement_handlers


def register_handlers() -> None:
    """Every package's reactions to events, subscribed once per process, and the ports
    one package offers another (reputation for matching)."""
    matching_service.use_reputation(ratings_service.reputations)
    dispatch_handlers.register()
    dispatch_ops.register()
    matching_service.register()
    meters_service.register()
    settlement_handlers.register()
