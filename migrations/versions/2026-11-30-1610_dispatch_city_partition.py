"""Dispatch: cities, and the city of every station, technician and order.

Existing rows are backfilled: each city a station already named becomes a city row, the
configured city (settings.city) always exists; a technician takes his station's city, an order
the city of the station nearest its address, and either falls back to the configured city.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 16:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from kit.config import get_settings

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    settings = get_settings()
    op.create_table(
        "dispatch_city",
        sa.Column("id", sa.String(length=60), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("hotline", sa.String(length=20), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatch_city")),
    )
    op.execute(sa.text(
        "INSERT INTO dispatch_city (id, name, timezone, hotline, currency) "
        "VALUES (:city, :city, 'Asia/Shanghai', :hotline, :currency)").bindparams(
        city=settings.city, hotline=settings.emergency_hotlines.get(settings.city), currency=settings.currency))
    op.execute("INSERT INTO dispatch_city (id, name, timezone, currency) "
               "SELECT DISTINCT city, city, 'Asia/Shanghai', 'CNY' FROM dispatch_service_station "
               "ON CONFLICT (id) DO NOTHING")

    op.drop_index("ix_dispatch_service_station_city", table_name="dispatch_service_station")
    op.alter_column("dispatch_service_station", "city", new_column_name="city_id")
    op.create_index(op.f("ix_dispatch_service_station_city_id"), "dispatch_service_station", ["city_id"])
    op.create_foreign_key(op.f("fk_dispatch_service_station_city_id_dispatch_city"), "dispatch_service_station",
                          "dispatch_city", ["city_id"], ["id"])

    op.add_column("dispatch_technician", sa.Column("city_id", sa.String(length=60), nullable=True))
    op.execute(sa.text(
        "UPDATE dispatch_technician t SET city_id = coalesce("
        "(SELECT s.city_id FROM dispatch_service_station s WHERE s.id = t.station_id), :city)"
    ).bindparams(city=settings.city))
    op.alter_column("dispatch_technician", "city_id", nullable=False)
    op.create_index(op.f("ix_dispatch_technician_city_id"), "dispatch_technician", ["city_id"])
    op.create_foreign_key(op.f("fk_dispatch_technician_city_id_dispatch_city"), "dispatch_technician",
                          "dispatch_city", ["city_id"], ["id"])

    op.add_column("dispatch_order", sa.Column("city_id", sa.String(length=60), nullable=True))
    op.execute(sa.text(
        "UPDATE dispatch_order o SET city_id = coalesce((SELECT s.city_id FROM dispatch_service_station s "
        "ORDER BY s.location <-> o.location LIMIT 1), :city)").bindparams(city=settings.city))
    op.alter_column("dispatch_order", "city_id", nullable=False)
    op.create_index("ix_dispatch_order_city_status", "dispatch_order", ["city_id", "status"])
    op.create_foreign_key(op.f("fk_dispatch_order_city_id_dispatch_city"), "dispatch_order",
                          "dispatch_city", ["city_id"], ["id"])


def downgrade() -> None:
    op.drop_constraint(op.f("fk_dispatch_order_city_id_dispatch_city"), "dispatch_order", type_="foreignkey")
    op.drop_index("ix_dispatch_order_city_status", table_name="dispatch_order")
    op.drop_column("dispatch_order", "city_id")
    op.drop_constraint(op.f("fk_dispatch_technician_city_id_dispatch_city"), "dispatch_technician", type_="foreignkey")
    op.drop_index(op.f("ix_dispatch_technician_city_id"), table_name="dispatch_technician")
    op.drop_column("dispatch_technician", "city_id")
    op.drop_constraint(op.f("fk_dispatch_service_station_city_id_dispatch_city"), "dispatch_service_station",
                       type_="foreignkey")
    op.drop_index(op.f("ix_dispatch_service_station_city_id"), table_name="dispatch_service_station")
    op.alter_column("dispatch_service_station", "city_id", new_column_name="city")
    op.create_index("ix_dispatch_service_station_city", "dispatch_service_station", ["city"])
    op.drop_table("dispatch_city")
