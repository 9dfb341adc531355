"""The events dispatch publishes about orders and technicians (the wire contract other
packages read)."""

import uuid
from typing import Any

from pydantic import Field

from kit.events import Event


class OrderCreated(Event):
    topic = "dispatch.order_created"
    order_id: uuid.UUID
    priority: str
    kind: str
    source: str
    required_certification: str


class OrderStatusChanged(Event):
    """`technician_id` is the order's technician after the change, or the one who held it; the
    free-form `payload` is the action's (a cancellation fee, a final price, who was released)."""

    topic = "dispatch.order_status_changed"
    order_id: uuid.UUID
    action: str
    from_: str = Field(alias="from")
    to: str
    technician_id: uuid.UUID | None = None
    reason: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


class CertificationDecided(Event):
    certification_id: uuid.UUID
    technician_id: uuid.UUID
    kind: str


class CertificationVerified(CertificationDecided):
    topic = "dispatch.certification_verified"


class CertificationRejected(CertificationDecided):
    topic = "dispatch.certification_rejected"


class CertificationRevoked(CertificationDecided):
    topic = "dispatch.certification_revoked"


CERTIFICATION_DECIDED: dict[str, type[CertificationDecided]] = {
    "verified": CertificationVerified, "rejected": CertificationRejected, "revoked": CertificationRevoked}
