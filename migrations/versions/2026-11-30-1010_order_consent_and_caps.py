"""Orders: follow-up consent, price-change binding.

A priced follow-up starts in `awaiting_consent`; the order status is now checked by the database
(price changes are the field branch's: field_0002).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 10:10:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here: a later state needs its own migration.
STATES = (
    "awaiting_consent", "created", "matching", "offered", "accepted", "en_route", "arrived",
    "in_service", "completed", "reviewed", "settled", "cancelled", "unfulfilled",
)


def upgrade() -> None:
    op.create_check_constraint(op.f("ck_dispatch_order_status"), "dispatch_order", f"status IN {STATES}")


def downgrade() -> None:
    # Without the state, an order nobody agreed to is cancelled rather than matched and charged.
    op.execute("UPDATE dispatch_order SET status = 'cancelled', status_reason = 'followup_not_consented' "
               "WHERE status = 'awaiting_consent'")
    op.drop_constraint(op.f("ck_dispatch_order_status"), "dispatch_order", type_="check")
