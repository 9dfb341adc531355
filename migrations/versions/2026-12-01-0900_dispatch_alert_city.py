"""Dispatch: ops alerts carry their city, so that each city's operations see their own.

The `city` column of 0007 (always the configured city) becomes `city_id`, a reference to
dispatch_city; existing alerts take their order's city, alerts without an order the configured
city.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from kit.config import get_settings

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("dispatch_ops_alert", "city", new_column_name="city_id", type_=sa.String(length=60),
                    existing_nullable=False)
    op.execute(sa.text(
        "UPDATE dispatch_ops_alert a SET city_id = coalesce("
        "(SELECT o.city_id FROM dispatch_order o WHERE o.id = a.order_id), :city)").bindparams(city=get_settings().city))
    op.create_index(op.f("ix_dispatch_ops_alert_city_id"), "dispatch_ops_alert", ["city_id"])
    op.create_foreign_key(op.f("fk_dispatch_ops_alert_city_id_dispatch_city"), "dispatch_ops_alert",
                          "dispatch_city", ["city_id"], ["id"])


def downgrade() -> None:
    op.drop_constraint(op.f("fk_dispatch_ops_alert_city_id_dispatch_city"), "dispatch_ops_alert", type_="foreignkey")
    op.drop_index(op.f("ix_dispatch_ops_alert_city_id"), table_name="dispatch_ops_alert")
    op.alter_column("dispatch_ops_alert", "city_id", new_column_name="city",
                    type_=sqlmodel.sql.sqltypes.AutoString(length=64), existing_nullable=False)
