"""The topic -> subscriber table in app/wiring.py is the whole truth: each package's own
register() subscribes nothing the table does not list."""

from app.wiring import SUBSCRIPTIONS
from dispatch import handlers as dispatch_handlers
from dispatch import ops as dispatch_ops
from kit import events
from matching import service as matching_service
from meters import service as meters_service
from settlement import handlers as settlement_handlers


def test_the_packages_register_exactly_what_the_wiring_table_lists(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(events, "_subscriptions", type(events._subscriptions)(dict))
    for register in (dispatch_handlers.register, dispatch_ops.register, matching_service.register,
                     meters_service.register, settlement_handlers.register):
        register()
    registered = {(topic, name, handler) for topic, subs in events.subscriptions().items()
                  for name, handlers in subs.items() for handler in handlers}
    assert registered == set(SUBSCRIPTIONS)
