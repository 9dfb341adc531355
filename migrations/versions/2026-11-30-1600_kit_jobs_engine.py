"""Kit: the job engine's tables and the per-subscriber event deliveries.

pgqueuer's own tables come from pgqueuer's install and uninstall SQL, so that its upgrades
(`pgq upgrade`) stay pgqueuer's; the deliveries are ours.

Revision ID: kit_0001
Revises: 0007
Create Date: 2026-11-30 16:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment
from sqlalchemy.util import await_only

revision: str = "kit_0001"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = ("kit",)
depends_on: str | Sequence[str] | None = None


def _pgqueuer(sql: str) -> None:
    """Several statements (and a plpgsql body) in one simple query on the migration's own
    connection and transaction."""
    await_only(op.get_bind().connection.driver_connection.execute(sql))


def upgrade() -> None:
    _pgqueuer(QueryBuilderEnvironment().build_install_query())
    op.create_table(
        "kit_delivery",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("topic", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("subscriber", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("order_key", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("deferrals", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'done', 'dead', 'discarded')", name=op.f("ck_kit_delivery_state")),
        sa.ForeignKeyConstraint(["event_id"], ["dispatch_outbox.id"], ondelete="CASCADE",
                                name=op.f("fk_kit_delivery_event_id_dispatch_outbox")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kit_delivery")),
        sa.UniqueConstraint("event_id", "subscriber", name=op.f("uq_kit_delivery_event_id_subscriber")),
    )
    op.create_index("ix_kit_delivery_pending_order", "kit_delivery", ["subscriber", "order_key", "event_id"],
                    unique=False, postgresql_where=sa.text("state = 'pending'"))
    op.create_index("ix_kit_delivery_dead", "kit_delivery", ["created_at", "id"], unique=False,
                    postgresql_where=sa.text("state = 'dead'"))


def downgrade() -> None:
    op.drop_index("ix_kit_delivery_dead", table_name="kit_delivery", postgresql_where=sa.text("state = 'dead'"))
    op.drop_index("ix_kit_delivery_pending_order", table_name="kit_delivery",
                  postgresql_where=sa.text("state = 'pending'"))
    op.drop_table("kit_delivery")
    _pgqueuer(QueryBuilderEnvironment().build_uninstall_query())
