"""The events matching publishes about offers."""

import uuid

from kit.events import Event, IsoDatetime


class OfferCreated(Event):
    topic = "matching.offer_created"
    offer_id: uuid.UUID
    order_id: uuid.UUID
    technician_id: uuid.UUID
    expires_at: IsoDatetime
    eta_s: float
    distance_m: float


class OfferWithdrawn(Event):
    """`reason`: expired, taken, assigned_by_operator, …"""

    topic = "matching.offer_withdrawn"
    offer_id: uuid.UUID
    order_id: uuid.UUID
    technician_id: uuid.UUID
    reason: str | None = None
