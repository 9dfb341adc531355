"""Matching: observed trip times (departure -> check-in) and the fitted ETA models.

Revision ID: matching_0004
Revises: matching_0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "matching_0004"
down_revision: str | None = "matching_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "matching_trip_time",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("technician_id", sa.Uuid(), nullable=False),
        sa.Column("city_id", sa.String(length=60), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("district", sa.String(length=40), nullable=False),
        sa.Column("start_lon", sa.Float(), nullable=False),
        sa.Column("start_lat", sa.Float(), nullable=False),
        sa.Column("end_lon", sa.Float(), nullable=False),
        sa.Column("end_lat", sa.Float(), nullable=False),
        sa.Column("distance_m", sa.Float(), nullable=False),
        sa.Column("local_hour", sa.Integer(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("departed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["city_id"], ["dispatch_city.id"], name=op.f("fk_matching_trip_time_city_id_dispatch_city")),
        sa.ForeignKeyConstraint(["order_id"], ["dispatch_order.id"],
                                name=op.f("fk_matching_trip_time_order_id_dispatch_order")),
        sa.ForeignKeyConstraint(["technician_id"], ["dispatch_technician.id"],
                                name=op.f("fk_matching_trip_time_technician_id_dispatch_technician")),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_matching_trip_time")),
    )
    op.create_index(op.f("ix_matching_trip_time_technician_id"), "matching_trip_time", ["technician_id"])
    op.create_index("ix_matching_trip_time_arrived", "matching_trip_time", ["arrived_at"],
                    postgresql_where=sa.text("duration_s IS NOT NULL"))
    op.create_table(
        "matching_eta_model",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trips", sa.Integer(), nullable=False),
        sa.Column("learned_mae_s", sa.Float(), nullable=False),
        sa.Column("learned_p90_s", sa.Float(), nullable=False),
        sa.Column("baseline_mae_s", sa.Float(), nullable=False),
        sa.Column("baseline_p90_s", sa.Float(), nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_matching_eta_model")),
    )


def downgrade() -> None:
    op.drop_table("matching_eta_model")
    op.drop_index("ix_matching_trip_time_arrived", table_name="matching_trip_time")
    op.drop_index(op.f("ix_matching_trip_time_technician_id"), table_name="matching_trip_time")
    op.drop_table("matching_trip_time")
