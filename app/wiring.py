"""The wiring every process needs before it handles events: who reacts to which event, in one
table, and the ports one package offers another.

Each subscriber (a package) gets its own delivery of every event of its topics: its own
transaction, retries and dead letter (kit/events.py); its handlers for one topic run in the
order listed. The packages' own `register()` functions subscribe the same handlers (the tests
use them); tests/backbone/test_engine_wiring.py checks that they and this table agree.
Each topic's payload is a type declared in its publisher's `events` module, and each handler
parses it at the edge (`kit.events.handles`); tests/backbone/test_event_types.py checks both.
"""

from dispatch import handlers as dispatch_handlers
from dispatch import ops as dispatch_ops
from dispatch import push as dispatch_push
from dispatch.field import campaigns as field_campaigns
from kit import events, jobs
from matching import eta as matching_eta
from matching import service as matching_service
from meters import reminders as meters_reminders
from meters import rules as meters_rules
from ratings import service as ratings_service
from scheduling import replan as scheduling_replan
from scheduling import service as scheduling_service
from settlement import handlers as settlement_handlers

SUBSCRIPTIONS: tuple[tuple[str, str, events.Handler], ...] = (
    # topic                              subscriber    handler
    ("dispatch.order_created",          "matching",   matching_service.on_order_created),
    ("dispatch.order_status_changed",   "matching",   matching_service.on_order_status_changed),
    ("dispatch.order_status_changed",   "matching",   matching_eta.on_order_status_changed),
    ("dispatch.order_status_changed",   "dispatch",   dispatch_handlers.on_order_status_changed),
    ("dispatch.order_status_changed",   "dispatch",   dispatch_ops.on_order_status_changed),
    ("dispatch.order_status_changed",   "settlement", settlement_handlers.on_order_status_changed),
    ("dispatch.order_status_changed",   "meters",     meters_rules.on_order_status_changed),
    ("dispatch.order_status_changed",   "meters",     meters_reminders.on_order_status_changed),
    ("dispatch.order_status_changed",   "scheduling", scheduling_replan.on_order_status_changed),
    ("matching.offer_created",          "dispatch",   dispatch_handlers.on_offer_created),
    # Web Push (dispatch/push.py) is a subscriber of its own: its retries hold up no dispatch delivery.
    ("matching.offer_created",          "push",       dispatch_push.on_offer_created),
    ("matching.offer_withdrawn",        "dispatch",   dispatch_handlers.on_offer_withdrawn),
    ("meters.safety_advice_issued",     "dispatch",   dispatch_handlers.on_safety_advice),
    ("meters.maintenance_reminder_due", "dispatch",   dispatch_handlers.on_maintenance_reminder),
    ("field.hazard_found",              "dispatch",   dispatch_handlers.on_hazard_found),
    ("field.price_change_requested",    "dispatch",   dispatch_handlers.on_price_change_requested),
    ("field.price_change_rejected",     "dispatch",   dispatch_handlers.on_price_change_rejected),
    ("field.price_change_approved",     "settlement", settlement_handlers.on_price_change_approved),
    ("ratings.review_finalized",        "settlement", settlement_handlers.on_review_finalized),
)


# Subscribers whose handlers call the payment provider (holds, captures) or run the route
# solver (a day re-planned): delivered on the background lane, beside the payouts, never in
# front of an emergency offer.
SLOW_SUBSCRIBERS = ("settlement", "scheduling")
# Subscribers whose deliveries of one order stand alone: each offer's push goes out at once,
# whatever another technician's push service does.
UNORDERED = ("push",)


def register_handlers() -> None:
    """Every subscription of the table, once per process, and the ports one package offers
    another (reputation and day plans for matching, booked windows for inspection campaigns)."""
    matching_service.use_reputation(ratings_service.reputations)
    matching_service.use_plans(scheduling_replan.commitments)
    field_campaigns.use_booker(scheduling_service.book_campaign_visit)
    for topic, subscriber, handler in SUBSCRIPTIONS:
        events.subscribe(topic, handler, subscriber=subscriber)
    for subscriber in SLOW_SUBSCRIBERS:
        jobs.mark_slow(subscriber)
    for subscriber in UNORDERED:
        events.mark_unordered(subscriber)
    events.mark_wired()
