"""Field: bounded hazard deadlines, withdrawn price changes.

Revision ID: field_0002
Revises: field_0001
Create Date: 2026-11-30 10:20:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = "field_0002"
down_revision: str | None = "field_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("ck_field_price_change_status"), "field_price_change", type_="check")
    op.create_check_constraint(op.f("ck_field_price_change_status"), "field_price_change",
                               "status IN ('pending','approved','rejected','superseded','withdrawn')")
    op.create_check_constraint(op.f("ck_field_hazard_deadline"), "field_hazard", "deadline_at > found_at")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_field_hazard_deadline"), "field_hazard", type_="check")
    op.execute("UPDATE field_price_change SET status = 'superseded' WHERE status = 'withdrawn'")
    op.drop_constraint(op.f("ck_field_price_change_status"), "field_price_change", type_="check")
    op.create_check_constraint(op.f("ck_field_price_change_status"), "field_price_change",
                               "status IN ('pending','approved','rejected','superseded')")
