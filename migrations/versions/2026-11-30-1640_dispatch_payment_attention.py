"""Dispatch: orders whose payment needs the customer's attention.

A declined card moves the order to `payment_attention` (dispatch/states.py); the order status
check constraint of 0006 gains the state, and the status columns widen to hold its name.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 16:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here: a later state needs its own migration.
BEFORE = (
    "awaiting_consent", "created", "matching", "offered", "accepted", "en_route", "arrived",
    "in_service", "completed", "reviewed", "settled", "cancelled", "unfulfilled",
)
STATES = (*BEFORE, "payment_attention")
_STATUS_COLUMNS = (("dispatch_order", "status", False), ("dispatch_order_event", "from_status", True),
                   ("dispatch_order_event", "to_status", False))


def _resize(length: int) -> None:
    for table, column, nullable in _STATUS_COLUMNS:
        op.alter_column(table, column, type_=sa.String(length), existing_nullable=nullable)


def upgrade() -> None:
    _resize(20)
    op.drop_constraint(op.f("ck_dispatch_order_status"), "dispatch_order", type_="check")
    op.create_check_constraint(op.f("ck_dispatch_order_status"), "dispatch_order", f"status IN {STATES}")


def downgrade() -> None:
    # Without the state, an order waiting for another card ends as operations would end it.
    op.execute("UPDATE dispatch_order SET status = 'cancelled', status_reason = 'payment_declined' "
               "WHERE status = 'payment_attention'")
    op.drop_constraint(op.f("ck_dispatch_order_status"), "dispatch_order", type_="check")
    op.create_check_constraint(op.f("ck_dispatch_order_status"), "dispatch_order", f"status IN {BEFORE}")
    op.execute("UPDATE dispatch_order_event SET from_status = 'cancelled' WHERE from_status = 'payment_attention'")
    op.execute("UPDATE dispatch_order_event SET to_status = 'cancelled' WHERE to_status = 'payment_attention'")
    _resize(16)
