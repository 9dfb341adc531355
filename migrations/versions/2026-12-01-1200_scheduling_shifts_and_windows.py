"""Scheduling: technicians' weekly shifts, days off and start/end places; booked appointments
(an arrival window on the order, the `scheduled` state, the technician whose capacity it holds).

Revision ID: scheduling_0001
Revises: 0014
Create Date: 2026-12-01 12:00:00
"""

from collections.abc import Sequence

import geoalchemy2
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "scheduling_0001"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = ("scheduling",)
depends_on: str | Sequence[str] | None = None

# Frozen here: a later state needs its own migration.
BEFORE = (
    "awaiting_consent", "created", "matching", "offered", "accepted", "en_route", "arrived",
    "in_service", "completed", "reviewed", "settled", "cancelled", "unfulfilled", "payment_attention",
)
STATES = (*BEFORE, "scheduled")


def upgrade() -> None:
    op.add_column("dispatch_order", sa.Column("window_start", sa.DateTime(timezone=True), nullable=True))
    op.add_column("dispatch_order", sa.Column("window_end", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(op.f("ck_dispatch_order_window"), "dispatch_order",
                               "(window_start IS NULL) = (window_end IS NULL) AND window_end > window_start")
    op.drop_constraint(op.f("ck_dispatch_order_status"), "dispatch_order", type_="check")
    op.create_check_constraint(op.f("ck_dispatch_order_status"), "dispatch_order", f"status IN {STATES}")
    op.create_table(
        "scheduling_weekly_shift",
        sa.Column("technician_id", sa.Uuid(), nullable=False),
        sa.Column("weekday", sa.SmallInteger(), nullable=False),
        sa.Column("starts", sa.Time(), nullable=False),
        sa.Column("ends", sa.Time(), nullable=False),
        sa.Column("breaks", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.CheckConstraint("weekday BETWEEN 0 AND 6", name=op.f("ck_scheduling_weekly_shift_weekday")),
        sa.CheckConstraint("ends > starts", name=op.f("ck_scheduling_weekly_shift_hours")),
        sa.ForeignKeyConstraint(["technician_id"], ["dispatch_technician.id"],
                                name=op.f("fk_scheduling_weekly_shift_technician_id_dispatch_technician")),
        sa.PrimaryKeyConstraint("technician_id", "weekday", name=op.f("pk_scheduling_weekly_shift")),
    )
    op.create_table(
        "scheduling_day_off",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("technician_id", sa.Uuid(), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.CheckConstraint("last_day >= first_day", name=op.f("ck_scheduling_day_off_days")),
        sa.ForeignKeyConstraint(["technician_id"], ["dispatch_technician.id"],
                                name=op.f("fk_scheduling_day_off_technician_id_dispatch_technician")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduling_day_off")),
    )
    op.create_index(op.f("ix_scheduling_day_off_technician_id"), "scheduling_day_off", ["technician_id"])
    op.create_table(
        "scheduling_roster",
        sa.Column("technician_id", sa.Uuid(), nullable=False),
        sa.Column("start_location", geoalchemy2.types.Geography(geometry_type="POINT", srid=4326,
                                                                spatial_index=False), nullable=True),
        sa.Column("end_location", geoalchemy2.types.Geography(geometry_type="POINT", srid=4326,
                                                              spatial_index=False), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["technician_id"], ["dispatch_technician.id"],
                                name=op.f("fk_scheduling_roster_technician_id_dispatch_technician")),
        sa.PrimaryKeyConstraint("technician_id", name=op.f("pk_scheduling_roster")),
    )
    op.create_table(
        "scheduling_booking",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("technician_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["dispatch_order.id"],
                                name=op.f("fk_scheduling_booking_order_id_dispatch_order")),
        sa.ForeignKeyConstraint(["technician_id"], ["dispatch_technician.id"],
                                name=op.f("fk_scheduling_booking_technician_id_dispatch_technician")),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_scheduling_booking")),
    )
    op.create_index(op.f("ix_scheduling_booking_technician_id"), "scheduling_booking", ["technician_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_scheduling_booking_technician_id"), table_name="scheduling_booking")
    op.drop_table("scheduling_booking")
    op.drop_table("scheduling_roster")
    op.drop_index(op.f("ix_scheduling_day_off_technician_id"), table_name="scheduling_day_off")
    op.drop_table("scheduling_day_off")
    op.drop_table("scheduling_weekly_shift")
    # Without the state, a booking not yet released ends as operations would end it.
    op.execute("UPDATE dispatch_order SET status = 'cancelled', status_reason = 'scheduling_removed' "
               "WHERE status = 'scheduled'")
    op.execute("UPDATE dispatch_order_event SET from_status = 'cancelled' WHERE from_status = 'scheduled'")
    op.execute("UPDATE dispatch_order_event SET to_status = 'cancelled' WHERE to_status = 'scheduled'")
    op.drop_constraint(op.f("ck_dispatch_order_status"), "dispatch_order", type_="check")
    op.create_check_constraint(op.f("ck_dispatch_order_status"), "dispatch_order", f"status IN {BEFORE}")
    op.drop_constraint(op.f("ck_dispatch_order_window"), "dispatch_order", type_="check")
    op.drop_column("dispatch_order", "window_end")
    op.drop_column("dispatch_order", "window_start")
