"""The events of field work: inspections, hazards, identity checks and price changes."""

import uuid

from kit.events import Event, IsoDatetime


class CampaignRetriesExhausted(Event):
    topic = "field.campaign_retries_exhausted"
    address_id: uuid.UUID
    customer_id: uuid.UUID


class IdentityLocked(Event):
    topic = "field.identity_locked"
    order_id: uuid.UUID
    technician_id: uuid.UUID


class HazardFound(Event):
    topic = "field.hazard_found"
    order_id: uuid.UUID
    hazard_id: uuid.UUID
    customer_id: uuid.UUID
    category: str
    severity: str
    deadline_at: IsoDatetime
    followup_order_id: uuid.UUID


class PriceChangeRequested(Event):
    topic = "field.price_change_requested"
    order_id: uuid.UUID
    customer_id: uuid.UUID
    amount_minor: int
    currency: str


class PriceChangeApproved(Event):
    """Settlement raises the customer's hold to the approved price."""

    topic = "field.price_change_approved"
    order_id: uuid.UUID
    customer_id: uuid.UUID
    amount_minor: int
    currency: str
    price_change_id: uuid.UUID


class PriceChangeRejected(Event):
    """The technician is told the customer keeps the authorised price."""

    topic = "field.price_change_rejected"
    order_id: uuid.UUID
    technician_id: uuid.UUID | None
    amount_minor: int
    currency: str
    price_change_id: uuid.UUID
