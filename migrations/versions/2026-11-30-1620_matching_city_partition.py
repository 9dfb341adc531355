"""Matching: the city of every offer (its order's).

Revision ID: matching_0003
Revises: matching_0002
Create Date: 2026-11-30 16:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "matching_0003"
down_revision: str | None = "matching_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = ("0008",)


def upgrade() -> None:
    op.add_column("matching_offer", sa.Column("city_id", sa.String(length=60), nullable=True))
    op.execute("UPDATE matching_offer f SET city_id = o.city_id FROM dispatch_order o WHERE o.id = f.order_id")
    op.alter_column("matching_offer", "city_id", nullable=False)
    op.create_index("ix_matching_offer_city_status", "matching_offer", ["city_id", "status"])
    op.create_foreign_key(op.f("fk_matching_offer_city_id_dispatch_city"), "matching_offer",
                          "dispatch_city", ["city_id"], ["id"])


def downgrade() -> None:
    op.drop_constraint(op.f("fk_matching_offer_city_id_dispatch_city"), "matching_offer", type_="foreignkey")
    op.drop_index("ix_matching_offer_city_status", table_name="matching_offer")
    op.drop_column("matching_offer", "city_id")
