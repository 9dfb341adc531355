"""Field: a hazard is fixed on site (what was done, parts, photos) or needs a follow-up.

Revision ID: field_0003
Revises: field_0002
Create Date: 2026-11-30 11:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "field_0003"
down_revision: str | None = "field_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "field_hazard"


def upgrade() -> None:
    # Every hazard recorded so far got a follow-up: the server defaults fill them in, then go.
    op.add_column(_TABLE, sa.Column("resolution", sa.String(length=16), nullable=False,
                                    server_default="needs_followup"))
    op.add_column(_TABLE, sa.Column("fix_work_done", sa.String(length=2000), nullable=True))
    op.add_column(_TABLE, sa.Column("fix_parts", JSONB(), nullable=False, server_default="[]"))
    op.add_column(_TABLE, sa.Column("fix_photo_refs", JSONB(), nullable=False, server_default="[]"))
    for column in ("resolution", "fix_parts", "fix_photo_refs"):
        op.alter_column(_TABLE, column, server_default=None)
    op.alter_column(_TABLE, "deadline_at", existing_type=sa.DateTime(timezone=True), nullable=True)
    op.create_check_constraint(op.f("ck_field_hazard_resolution"), _TABLE,
                               "resolution IN ('fixed_on_site', 'needs_followup')")
    op.create_check_constraint(
        op.f("ck_field_hazard_resolution_fields"), _TABLE,
        "CASE WHEN resolution = 'fixed_on_site' THEN status = 'fixed' AND fix_work_done IS NOT NULL "
        "AND deadline_at IS NULL ELSE deadline_at IS NOT NULL END")


def downgrade() -> None:
    # A hazard fixed on site had no deadline: it gets its finding time plus a second.
    op.drop_constraint(op.f("ck_field_hazard_resolution_fields"), _TABLE, type_="check")
    op.drop_constraint(op.f("ck_field_hazard_resolution"), _TABLE, type_="check")
    op.execute("UPDATE field_hazard SET deadline_at = found_at + interval '1 second' WHERE deadline_at IS NULL")
    op.alter_column(_TABLE, "deadline_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    for column in ("fix_photo_refs", "fix_parts", "fix_work_done", "resolution"):
        op.drop_column(_TABLE, column)
