"""Settlement: webhook inbox attempts cap, rule bounds, auditor access.

The inbox gets a backoff time and a dead-letter time; a settlement's payout is bounded by its
base (the capture less refunds) in the database too.

Revision ID: settlement_0003
Revises: settlement_0002
Create Date: 2026-11-30 10:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "settlement_0003"
down_revision: str | None = "settlement_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("settlement_webhook_inbox", sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("settlement_webhook_inbox", sa.Column("dead_lettered_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(op.f("ck_settlement_settlement_payout_within_base"), "settlement_settlement",
                               "payout_minor <= base_minor")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_settlement_settlement_payout_within_base"), "settlement_settlement", type_="check")
    op.drop_column("settlement_webhook_inbox", "dead_lettered_at")
    op.drop_column("settlement_webhook_inbox", "next_attempt_at")
