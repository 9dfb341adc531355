"""Every event has a declared type: the topics of the wiring table, the handlers that parse them,
and the code that publishes them. The wire form stays what the outbox rows already hold."""

import ast
import importlib
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.wiring import SUBSCRIPTIONS
from dispatch.events import OrderStatusChanged
from kit.events import EVENT_TYPES, event_type_of
from matching.events import OfferCreated
from meters.events import MaintenanceReminderDue
from ratings.events import ReviewFinalized

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("kit", "dispatch", "matching", "ratings", "settlement", "meters", "api", "app")


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def _declared() -> dict[str, type]:
    for path in _sources():
        if path.name == "events.py" and path.parent.name != "kit":
            importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return dict(EVENT_TYPES)


def test_every_topic_of_the_wiring_table_has_a_declared_type() -> None:
    assert sorted({topic for topic, _, _ in SUBSCRIPTIONS} - set(_declared())) == []


def test_every_handler_of_the_wiring_table_parses_its_topics_type() -> None:
    declared = _declared()
    wrong = [(topic, handler.__qualname__, event_type_of(handler))
             for topic, _, handler in SUBSCRIPTIONS if event_type_of(handler) is not declared[topic]]
    assert wrong == []


def _untyped_publishes(source: str) -> list[str]:
    """Calls of `publish` (topic as a string) rather than `publish_event` (a declared type)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "kit.events":
            found += ["imports publish" for alias in node.names if alias.name == "publish"]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "publish" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id in ("events", "kit_events"):
            found.append(f"line {node.lineno}: events.publish")
    return found


def test_every_publish_site_publishes_a_declared_type() -> None:
    untyped = [f"{path.relative_to(ROOT)}: {site}" for path in _sources() if path != ROOT / "kit" / "events.py"
               for site in _untyped_publishes(path.read_text())]
    assert untyped == []


def test_the_publish_site_check_sees_a_string_topic() -> None:
    source = "from kit.events import publish\nfrom kit import events\nasync def f(s):\n    await events.publish(s, 'x.y', {})\n"
    assert _untyped_publishes(source) == ["imports publish", "line 4: events.publish"]


def test_a_status_change_written_before_the_types_parses_and_goes_out_unchanged() -> None:
    order, technician = str(uuid.uuid4()), str(uuid.uuid4())
    row = {"order_id": order, "action": "cancel", "from": "accepted", "to": "cancelled", "technician_id": technician,
           "reason": "customer_changed_mind", "payload": {"cancellation_fee": {"amount_minor": 1500, "currency": "CNY"}}}
    event = OrderStatusChanged.model_validate(row)
    assert (event.from_, event.technician_id) == ("accepted", uuid.UUID(technician))
    assert event.wire() == row


@pytest.mark.parametrize(("event_type", "row"), [
    (OfferCreated, {"offer_id": str(uuid.uuid4()), "order_id": str(uuid.uuid4()), "technician_id": str(uuid.uuid4()),
                    "expires_at": "2026-12-01T09:00:30.250000+00:00", "eta_s": 312.5, "distance_m": 1840.25}),
    (ReviewFinalized, {"order_id": str(uuid.uuid4()), "review_id": str(uuid.uuid4()),
                       "technician_id": str(uuid.uuid4()), "customer_id": str(uuid.uuid4()), "stars": 4,
                       "automatic": False, "finalized_at": "2026-12-01T09:00:00+00:00"}),
    (MaintenanceReminderDue, {"customer_id": str(uuid.uuid4()), "address_id": str(uuid.uuid4()),
                              "appliance_kind": "boiler", "order_kind": "boiler_service", "used_m3": 812.125,
                              "days_since_service": 400, "last_serviced_at": None}),
])
def test_times_and_numbers_go_out_as_they_were_written(event_type: type, row: dict) -> None:
    assert event_type.model_validate(row).wire() == row


def test_a_payload_missing_a_field_fails_at_the_handlers_edge() -> None:
    with pytest.raises(ValidationError):
        OrderStatusChanged.model_validate({"order_id": str(uuid.uuid4()), "action": "cancel", "to": "cancelled"})
