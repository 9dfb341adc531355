"""The topic -> subscriber table in app/wiring.py is the whole truth: each package's own
register() subscribes nothing the table does not list."""

from app.wiring import SUBSCRIPTIONS
from dispatch import handlers as dispatch_handlers
from dispatch import ops as dispatch_ops
from dispatch import push as dispatch_push
from kit import events
from matching import service as matching_service
from meters import service as meters_service
from scheduling import replan as scheduling_replan
from settlement import handlers as settlement_handlers


def test_the_packages_register_exactly_what_the_wiring_table_lists(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(events, "_subscriptions", type(events._subscriptions)(dict))
    for register in (dispatch_handlers.register, dispatch_ops.register, dispatch_push.register,
                     matching_service.register, meters_service.register, settlement_handlers.register,
                     scheduling_replan.register):
        register()
    registered = {(topic, name, handler) for topic, subs in events.subscriptions().items()
                  for name, handlers in subs.items() for handler in handlers}
    assert registered == set(SUBSCRIPTIONS)


async def test_provider_callers_wait_on_the_background_lane_and_an_emergency_has_its_own(session) -> None:  # noqa: ANN001
    import uuid

    from sqlalchemy import text
    from sqlmodel import select

    from app.wiring import register_handlers
    from kit import jobs
    from kit.models import Delivery, OutboxMessage

    register_handlers()
    order_id = str(uuid.uuid4())
    await events.publish(session, "dispatch.order_status_changed", {
        "order_id": order_id, "action": "complete", "from": "in_service", "to": "completed",
        "technician_id": None, "reason": None, "payload": {}})
    await events.publish(session, "dispatch.order_created", {
        "order_id": order_id, "priority": "emergency", "kind": "emergency_leak", "source": "alarm",
        "required_certification": "emergency"})
    lanes = {}
    for message in (await session.exec(select(OutboxMessage).where(
            OutboxMessage.payload["order_id"].astext == order_id))).all():
        for delivery in (await session.exec(select(Delivery).where(Delivery.event_id == message.id))).all():
            lanes[(message.topic, delivery.subscriber)] = tuple((await session.exec(text(
                "SELECT entrypoint FROM pgqueuer WHERE dedupe_key = :key").bindparams(
                key=jobs.delivery_job_key(delivery)))).one())
    assert lanes[("dispatch.order_status_changed", "settlement")] == (jobs.DELIVER_SLOW,)
    assert lanes[("dispatch.order_status_changed", "dispatch")] == (jobs.DELIVER,)
    assert lanes[("dispatch.order_created", "matching")] == (jobs.DELIVER_URGENT,)
