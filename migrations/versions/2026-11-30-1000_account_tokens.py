"""Accounts: token version, disabled flag, refresh tokens.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("dispatch_account", sa.Column("token_version", sa.Integer(), server_default="0", nullable=False))
    op.add_column("dispatch_account", sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "dispatch_refresh_token",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("family_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("spent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["dispatch_account.id"],
                                name=op.f("fk_dispatch_refresh_token_account_id_dispatch_account")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatch_refresh_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_dispatch_refresh_token_token_hash")),
    )
    op.create_index(op.f("ix_dispatch_refresh_token_account_id"), "dispatch_refresh_token", ["account_id"], unique=False)
    op.create_index(op.f("ix_dispatch_refresh_token_family_id"), "dispatch_refresh_token", ["family_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_dispatch_refresh_token_family_id"), table_name="dispatch_refresh_token")
    op.drop_index(op.f("ix_dispatch_refresh_token_account_id"), table_name="dispatch_refresh_token")
    op.drop_table("dispatch_refresh_token")
    op.drop_column("dispatch_account", "disabled_at")
    op.drop_column("dispatch_account", "token_version")
