"""Dispatch: Web Push subscriptions, one per device, so an offer reaches a locked phone.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 12:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dispatch_push_subscription",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("p256dh", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("auth", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["dispatch_account.id"],
                                name=op.f("fk_dispatch_push_subscription_account_id_dispatch_account")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatch_push_subscription")),
        sa.UniqueConstraint("endpoint", name=op.f("uq_dispatch_push_subscription_endpoint")),
    )
    op.create_index(op.f("ix_dispatch_push_subscription_account_id"), "dispatch_push_subscription", ["account_id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_dispatch_push_subscription_account_id"), table_name="dispatch_push_subscription")
    op.drop_table("dispatch_push_subscription")
