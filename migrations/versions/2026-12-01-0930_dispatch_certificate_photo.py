"""Dispatch: the photo of a certificate, uploaded by its technician for the verification queue.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dispatch_certificate_photo",
        sa.Column("certification_id", sa.Uuid(), nullable=False),
        sa.Column("media_type", sa.String(length=32), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("media_type IN ('image/jpeg', 'image/png', 'image/webp')",
                           name=op.f("ck_dispatch_certificate_photo_media_type")),
        sa.CheckConstraint("size_bytes > 0 AND size_bytes <= 800000",
                           name=op.f("ck_dispatch_certificate_photo_size_bytes")),
        sa.ForeignKeyConstraint(["certification_id"], ["dispatch_certification.id"],
                                name=op.f("fk_dispatch_certificate_photo_certification_id_dispatch_certification")),
        sa.PrimaryKeyConstraint("certification_id", name=op.f("pk_dispatch_certificate_photo")),
    )


def downgrade() -> None:
    op.drop_table("dispatch_certificate_photo")
