"""Matching: look-ahead values per (H3 cell, slot of the day), versioned per city (issue #17 item 2).

Revision ID: matching_0005
Revises: matching_0004
Create Date: 2026-12-01 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "matching_0005"
down_revision: str | None = "matching_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "matching_value_version",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("city_id", sa.String(length=60), nullable=False),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("slot_s", sa.Integer(), nullable=False),
        sa.Column("discount_per_s", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["city_id"], ["dispatch_city.id"],
                                name=op.f("fk_matching_value_version_city_id_dispatch_city")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_matching_value_version")),
    )
    op.create_index("ix_matching_value_version_city_id", "matching_value_version", ["city_id", "id"])
    op.create_table(
        "matching_cell_value",
        sa.Column("version_id", sa.BigInteger(), nullable=False),
        sa.Column("cell", sa.String(length=16), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("value_s", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["matching_value_version.id"], ondelete="CASCADE",
                                name=op.f("fk_matching_cell_value_version_id_matching_value_version")),
        sa.PrimaryKeyConstraint("version_id", "cell", "slot", name=op.f("pk_matching_cell_value")),
    )


def downgrade() -> None:
    op.drop_table("matching_cell_value")
    op.drop_index("ix_matching_value_version_city_id", table_name="matching_value_version")
    op.drop_table("matching_value_version")
