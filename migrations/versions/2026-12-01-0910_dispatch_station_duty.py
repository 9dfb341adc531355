"""Dispatch: a station's duty staff (operations accounts alerted at escalation thresholds).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 09:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dispatch_station_duty",
        sa.Column("station_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["dispatch_account.id"],
                                name=op.f("fk_dispatch_station_duty_account_id_dispatch_account")),
        sa.ForeignKeyConstraint(["station_id"], ["dispatch_service_station.id"],
                                name=op.f("fk_dispatch_station_duty_station_id_dispatch_service_station")),
        sa.PrimaryKeyConstraint("station_id", "account_id", name=op.f("pk_dispatch_station_duty")),
    )
    op.create_index(op.f("ix_dispatch_station_duty_account_id"), "dispatch_station_duty", ["account_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_dispatch_station_duty_account_id"), table_name="dispatch_station_duty")
    op.drop_table("dispatch_station_duty")
