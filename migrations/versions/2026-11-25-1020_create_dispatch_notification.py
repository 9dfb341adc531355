"""Notifications for users (pushed on sockets, listed over REST).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 10:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dispatch_notification",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("body", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("dedupe_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["dispatch_account.id"],
                                name=op.f("fk_dispatch_notification_account_id_dispatch_account")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatch_notification")),
        sa.UniqueConstraint("account_id", "dedupe_key", name=op.f("uq_dispatch_notification_account_id_dedupe_key")),
    )
    op.create_index(op.f("ix_dispatch_notification_account_id"), "dispatch_notification", ["account_id"], unique=False)
    op.create_index("ix_dispatch_notification_unread", "dispatch_notification", ["account_id", "created_at"],
                    unique=False, postgresql_where=sa.text("read_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_dispatch_notification_unread", table_name="dispatch_notification",
                  postgresql_where=sa.text("read_at IS NULL"))
    op.drop_index(op.f("ix_dispatch_notification_account_id"), table_name="dispatch_notification")
    op.drop_table("dispatch_notification")
