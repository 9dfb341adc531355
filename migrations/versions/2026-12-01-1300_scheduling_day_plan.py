"""Scheduling: the day plan, one row per planned stop (scheduling/planner.py).

Revision ID: scheduling_0002
Revises: scheduling_0001
Create Date: 2026-12-01 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "scheduling_0002"
down_revision: str | None = "scheduling_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scheduling_plan_stop",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("city_id", sa.String(length=60), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("technician_id", sa.Uuid(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("planned_arrival_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("planned_departure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("sequence >= 1", name=op.f("ck_scheduling_plan_stop_sequence")),
        sa.CheckConstraint("planned_departure_at >= planned_arrival_at", name=op.f("ck_scheduling_plan_stop_times")),
        sa.ForeignKeyConstraint(["order_id"], ["dispatch_order.id"],
                                name=op.f("fk_scheduling_plan_stop_order_id_dispatch_order")),
        sa.ForeignKeyConstraint(["city_id"], ["dispatch_city.id"],
                                name=op.f("fk_scheduling_plan_stop_city_id_dispatch_city")),
        sa.ForeignKeyConstraint(["technician_id"], ["dispatch_technician.id"],
                                name=op.f("fk_scheduling_plan_stop_technician_id_dispatch_technician")),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_scheduling_plan_stop")),
    )
    op.create_index("ix_scheduling_plan_stop_city_day", "scheduling_plan_stop", ["city_id", "day"])
    op.create_index(op.f("ix_scheduling_plan_stop_technician_id"), "scheduling_plan_stop", ["technician_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_scheduling_plan_stop_technician_id"), table_name="scheduling_plan_stop")
    op.drop_index("ix_scheduling_plan_stop_city_day", table_name="scheduling_plan_stop")
    op.drop_table("scheduling_plan_stop")
