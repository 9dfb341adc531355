"""Operations alerts; offers in rounds (several open offers per order, one per technician).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 11:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
# The offer index below belongs to the matching branch's table.
depends_on: str | Sequence[str] | None = ("matching_0001",)


def upgrade() -> None:
    op.create_table(
        "dispatch_ops_alert",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("city", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("level", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.Uuid(), nullable=True),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.CheckConstraint("level IN ('critical', 'warning')", name=op.f("ck_dispatch_ops_alert_level")),
        sa.ForeignKeyConstraint(["acknowledged_by"], ["dispatch_account.id"],
                                name=op.f("fk_dispatch_ops_alert_acknowledged_by_dispatch_account")),
        sa.ForeignKeyConstraint(["order_id"], ["dispatch_order.id"],
                                name=op.f("fk_dispatch_ops_alert_order_id_dispatch_order")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatch_ops_alert")),
    )
    op.create_index(op.f("ix_dispatch_ops_alert_order_id"), "dispatch_ops_alert", ["order_id"], unique=False)
    op.create_index("uq_dispatch_ops_alert_open", "dispatch_ops_alert", ["order_id", "kind"], unique=True,
                    postgresql_where=sa.text("acknowledged_at IS NULL"))
    op.create_index("ix_dispatch_ops_alert_open", "dispatch_ops_alert", ["created_at"], unique=False,
                    postgresql_where=sa.text("acknowledged_at IS NULL"))
    # An emergency round offers one order to several technicians at once: one open offer per
    # (order, technician) instead of per order.
    op.drop_index("uq_matching_offer_open_order", table_name="matching_offer", postgresql_where=sa.text("status = 'offered'"))
    op.create_index("uq_matching_offer_open_order_technician", "matching_offer", ["order_id", "technician_id"],
                    unique=True, postgresql_where=sa.text("status = 'offered'"))


def downgrade() -> None:
    # Keeps the best-ranked open offer of each order (the oldest, then the nearest).
    op.execute("""
        UPDATE matching_offer SET status = 'withdrawn', decided_at = now()
        WHERE status = 'offered' AND id NOT IN (
            SELECT DISTINCT ON (order_id) id FROM matching_offer WHERE status = 'offered'
            ORDER BY order_id, created_at, distance_m)""")
    op.drop_index("uq_matching_offer_open_order_technician", table_name="matching_offer",
                  postgresql_where=sa.text("status = 'offered'"))
    op.create_index("uq_matching_offer_open_order", "matching_offer", ["order_id"], unique=True,
                    postgresql_where=sa.text("status = 'offered'"))
    op.drop_index("ix_dispatch_ops_alert_open", table_name="dispatch_ops_alert",
                  postgresql_where=sa.text("acknowledged_at IS NULL"))
    op.drop_index("uq_dispatch_ops_alert_open", table_name="dispatch_ops_alert",
                  postgresql_where=sa.text("acknowledged_at IS NULL"))
    op.drop_index(op.f("ix_dispatch_ops_alert_order_id"), table_name="dispatch_ops_alert")
    op.drop_table("dispatch_ops_alert")
