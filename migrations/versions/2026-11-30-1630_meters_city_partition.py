"""Meters: the city of every device (the city of the station nearest its address, else the
configured city: the rule orders follow).

Revision ID: meters_0003
Revises: meters_0002
Create Date: 2026-11-30 16:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from kit.config import get_settings

revision: str = "meters_0003"
down_revision: str | None = "meters_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = ("0008",)


def upgrade() -> None:
    op.add_column("meters_device", sa.Column("city_id", sa.String(length=60), nullable=True))
    op.execute(sa.text(
        "UPDATE meters_device d SET city_id = coalesce((SELECT s.city_id FROM dispatch_service_station s, "
        "dispatch_address a WHERE a.id = d.address_id ORDER BY s.location <-> a.location LIMIT 1), :city)"
    ).bindparams(city=get_settings().city))
    op.alter_column("meters_device", "city_id", nullable=False)
    op.create_index(op.f("ix_meters_device_city_id"), "meters_device", ["city_id"])
    op.create_foreign_key(op.f("fk_meters_device_city_id_dispatch_city"), "meters_device",
                          "dispatch_city", ["city_id"], ["id"])


def downgrade() -> None:
    op.drop_constraint(op.f("fk_meters_device_city_id_dispatch_city"), "meters_device", type_="foreignkey")
    op.drop_index(op.f("ix_meters_device_city_id"), table_name="meters_device")
    op.drop_column("meters_device", "city_id")
