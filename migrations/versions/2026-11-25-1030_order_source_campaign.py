"""Orders raised by inspection campaigns get their own source.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 10:30:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("ck_dispatch_order_source"), "dispatch_order", type_="check")
    op.create_check_constraint("source", "dispatch_order",
                               "source IN ('customer', 'meter', 'alarm', 'followup', 'campaign')")


def downgrade() -> None:
    op.execute("UPDATE dispatch_order SET source = 'customer' WHERE source = 'campaign'")
    op.drop_constraint(op.f("ck_dispatch_order_source"), "dispatch_order", type_="check")
    op.create_check_constraint("source", "dispatch_order", "source IN ('customer', 'meter', 'alarm', 'followup')")
