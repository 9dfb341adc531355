"""Matching: the candidates considered in each offer round, and why each was picked or skipped.

Revision ID: matching_0002
Revises: matching_0001
Create Date: 2026-11-30 11:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "matching_0002"
down_revision: str | None = "matching_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "matching_offer_candidate",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("technician_id", sa.Uuid(), nullable=False),
        sa.Column("picked", sa.Boolean(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("distance_m", sa.Float(), nullable=True),
        sa.Column("eta_s", sa.Float(), nullable=True),
        sa.Column("rating", sa.Float(), nullable=True),
        sa.Column("certification", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("active_jobs", sa.Integer(), nullable=True),
        sa.Column("max_jobs", sa.Integer(), nullable=True),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["dispatch_order.id"],
                                name=op.f("fk_matching_offer_candidate_order_id_dispatch_order")),
        sa.ForeignKeyConstraint(["technician_id"], ["dispatch_technician.id"],
                                name=op.f("fk_matching_offer_candidate_technician_id_dispatch_technician")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_matching_offer_candidate")),
        sa.UniqueConstraint("order_id", "round", "technician_id",
                            name=op.f("uq_matching_offer_candidate_order_id_round_technician_id")),
    )
    op.create_index(op.f("ix_matching_offer_candidate_order_id"), "matching_offer_candidate", ["order_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_matching_offer_candidate_order_id"), table_name="matching_offer_candidate")
    op.drop_table("matching_offer_candidate")
