"""Settlement: the ledger chained per order with a daily anchor; payment attempts; claw-back
reversals decided outside the booking transaction; the transfer reservation.

Entries already written keep their one platform-wide chain under the name `legacy` (their
hashes and links are unchanged); new entries chain per order (settlement/ledger.py).

Revision ID: settlement_0005
Revises: settlement_0004
Create Date: 2026-11-30 16:50:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "settlement_0005"
down_revision: str | None = "settlement_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ENTRY = "settlement_ledger_entry"


def upgrade() -> None:
    op.add_column(_ENTRY, sa.Column("chain", sa.String(length=120), nullable=True))
    op.add_column(_ENTRY, sa.Column("chain_seq", sa.BigInteger(), nullable=True))
    # The backfill names the existing chain; the append-only trigger stays off only for it.
    op.execute(f"ALTER TABLE {_ENTRY} DISABLE TRIGGER {_ENTRY}_append_only")
    op.execute(f"""UPDATE {_ENTRY} e SET chain = 'legacy', chain_seq = n.rn
                   FROM (SELECT id, row_number() OVER (ORDER BY seq) AS rn FROM {_ENTRY}) n WHERE e.id = n.id""")
    op.execute(f"ALTER TABLE {_ENTRY} ENABLE TRIGGER {_ENTRY}_append_only")
    op.alter_column(_ENTRY, "chain", nullable=False)
    op.alter_column(_ENTRY, "chain_seq", nullable=False)
    op.create_unique_constraint(op.f("uq_settlement_ledger_entry_chain_chain_seq"), _ENTRY, ["chain", "chain_seq"])

    op.create_table(
        "settlement_ledger_chain",
        sa.Column("chain", sa.String(length=120), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("tip_hash", sa.String(length=64), nullable=False),
        sa.Column("anchored_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chain", name=op.f("pk_settlement_ledger_chain")),
    )
    op.execute(f"""INSERT INTO settlement_ledger_chain (chain, seq, tip_hash, anchored_seq)
                   SELECT 'legacy', chain_seq, content_hash, 0 FROM {_ENTRY}
                   WHERE chain = 'legacy' ORDER BY chain_seq DESC LIMIT 1""")
    op.create_table(
        "settlement_ledger_anchor",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("tips", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("anchor_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_settlement_ledger_anchor")),
    )
    op.execute("""CREATE TRIGGER settlement_ledger_anchor_append_only BEFORE UPDATE OR DELETE
                  ON settlement_ledger_anchor FOR EACH ROW EXECUTE FUNCTION settlement_refuse_change()""")
    op.execute("""CREATE TRIGGER settlement_ledger_anchor_no_truncate BEFORE TRUNCATE
                  ON settlement_ledger_anchor FOR EACH STATEMENT EXECUTE FUNCTION settlement_refuse_change()""")

    op.create_table(
        "settlement_payment_attempt",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("payment_method_ref", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("decline_code", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("outcome IN ('declined', 'authorised')", name=op.f("ck_settlement_payment_attempt_outcome")),
        sa.CheckConstraint("attempt >= 1", name=op.f("ck_settlement_payment_attempt_attempt")),
        sa.PrimaryKeyConstraint("order_id", "attempt", name=op.f("pk_settlement_payment_attempt")),
    )
    op.create_table(
        "settlement_clawback",
        sa.Column("settlement_id", sa.Uuid(), nullable=False),
        sa.Column("cause_id", sa.String(length=100), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("reversal_minor", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reversal_id", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'reversed', 'kept')", name=op.f("ck_settlement_clawback_status")),
        sa.PrimaryKeyConstraint("settlement_id", "cause_id", name=op.f("pk_settlement_clawback")),
    )
    op.add_column("settlement_settlement",
                  sa.Column("transfer_requested_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("settlement_settlement", "transfer_requested_at")
    op.drop_table("settlement_clawback")
    op.drop_table("settlement_payment_attempt")
    op.drop_table("settlement_ledger_anchor")
    op.drop_table("settlement_ledger_chain")
    op.drop_constraint(op.f("uq_settlement_ledger_entry_chain_chain_seq"), _ENTRY, type_="unique")
    op.drop_column(_ENTRY, "chain_seq")
    op.drop_column(_ENTRY, "chain")
