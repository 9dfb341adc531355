"""Field: photos of a job, uploaded by its technician on site and named by the report and hazards.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "field_job_photo",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("media_type", sa.String(length=32), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("uploaded_by", sa.Uuid(), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("media_type IN ('image/jpeg', 'image/png', 'image/webp')",
                           name=op.f("ck_field_job_photo_media_type")),
        sa.CheckConstraint("size_bytes > 0 AND size_bytes <= 800000", name=op.f("ck_field_job_photo_size_bytes")),
        sa.ForeignKeyConstraint(["order_id"], ["dispatch_order.id"],
                                name=op.f("fk_field_job_photo_order_id_dispatch_order")),
        sa.ForeignKeyConstraint(["uploaded_by"], ["dispatch_technician.id"],
                                name=op.f("fk_field_job_photo_uploaded_by_dispatch_technician")),
        sa.PrimaryKeyConstraint("order_id", "sha256", name=op.f("pk_field_job_photo")),
    )


def downgrade() -> None:
    op.drop_table("field_job_photo")
