"""create settlement tables, the ledger's invariants as triggers, the first rule set

Revision ID: settlement_0001
Revises: 0002
Create Date: 2026-11-25 22:35:26.474901
"""
from collections.abc import Sequence
from datetime import datetime, timezone

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'settlement_0001'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = ('settlement',)
depends_on: str | Sequence[str] | None = None

# Postings of one entry sum to zero per currency and no technician payable ends below zero;
# deferred to commit so an entry's postings can be inserted one by one.
_BALANCED = ("""
CREATE FUNCTION settlement_check_entry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM settlement_ledger_posting WHERE entry_id = NEW.entry_id
               GROUP BY currency HAVING SUM(amount_minor) <> 0) THEN
        RAISE EXCEPTION 'ledger entry % does not balance', NEW.entry_id USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.account LIKE 'technician_payable:%' AND (
        SELECT SUM(amount_minor) FROM settlement_ledger_posting
        WHERE account = NEW.account AND currency = NEW.currency) > 0 THEN
        RAISE EXCEPTION '% would go negative', NEW.account USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$
""", """
CREATE CONSTRAINT TRIGGER settlement_ledger_posting_balanced AFTER INSERT ON settlement_ledger_posting
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION settlement_check_entry()
""")
_APPEND_ONLY = ("""
CREATE FUNCTION settlement_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: correct with a reversing entry', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$
""", """
CREATE TRIGGER settlement_ledger_entry_append_only BEFORE UPDATE OR DELETE ON settlement_ledger_entry
    FOR EACH ROW EXECUTE FUNCTION settlement_refuse_change()
""", """
CREATE TRIGGER settlement_ledger_posting_append_only BEFORE UPDATE OR DELETE ON settlement_ledger_posting
    FOR EACH ROW EXECUTE FUNCTION settlement_refuse_change()
""", """
CREATE TRIGGER settlement_ledger_entry_no_truncate BEFORE TRUNCATE ON settlement_ledger_entry
    FOR EACH STATEMENT EXECUTE FUNCTION settlement_refuse_change()
""", """
CREATE TRIGGER settlement_ledger_posting_no_truncate BEFORE TRUNCATE ON settlement_ledger_posting
    FOR EACH STATEMENT EXECUTE FUNCTION settlement_refuse_change()
""")
_rule_set = sa.table(
    "settlement_rule_set",
    sa.column("version", sa.Integer), sa.column("platform_fee_bps", sa.Integer),
    sa.column("platform_fee_fixed_minor", sa.BigInteger), sa.column("adjustment_bps_by_stars", postgresql.JSONB),
    sa.column("minimum_payout_minor", sa.BigInteger), sa.column("payout_schedule", sa.String),
    sa.column("cancellation_fee_minor", sa.BigInteger), sa.column("created_by", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    op.create_table('settlement_audit_access',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('target', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_audit_access'))
    )
    op.create_index(op.f('ix_settlement_audit_access_account_id'), 'settlement_audit_access', ['account_id'], unique=False)
    op.create_table('settlement_connected_account',
    sa.Column('technician_id', sa.Uuid(), nullable=False),
    sa.Column('provider_account_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('technician_id', name=op.f('pk_settlement_connected_account')),
    sa.UniqueConstraint('provider_account_id', name=op.f('uq_settlement_connected_account_provider_account_id'))
    )
    op.create_table('settlement_ledger_entry',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('business_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=True),
    sa.Column('settlement_id', sa.Uuid(), nullable=True),
    sa.Column('provider_object_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('memo', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('content_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('prev_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_ledger_entry')),
    sa.UniqueConstraint('business_key', name=op.f('uq_settlement_ledger_entry_business_key')),
    sa.UniqueConstraint('provider_object_id', name=op.f('uq_settlement_ledger_entry_provider_object_id')),
    sa.UniqueConstraint('seq', name=op.f('uq_settlement_ledger_entry_seq'))
    )
    op.create_index(op.f('ix_settlement_ledger_entry_created_at'), 'settlement_ledger_entry', ['created_at'], unique=False)
    op.create_index(op.f('ix_settlement_ledger_entry_order_id'), 'settlement_ledger_entry', ['order_id'], unique=False)
    op.create_index(op.f('ix_settlement_ledger_entry_settlement_id'), 'settlement_ledger_entry', ['settlement_id'], unique=False)
    op.create_table('settlement_payment',
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('hold_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('charge_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('held_minor', sa.BigInteger(), nullable=False),
    sa.Column('captured_minor', sa.BigInteger(), nullable=False),
    sa.Column('refunded_minor', sa.BigInteger(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('authorised', 'captured', 'cancelled')", name=op.f('ck_settlement_payment_status')),
    sa.CheckConstraint('captured_minor <= held_minor AND refunded_minor <= captured_minor', name=op.f('ck_settlement_payment_amounts')),
    sa.PrimaryKeyConstraint('order_id', name=op.f('pk_settlement_payment')),
    sa.UniqueConstraint('hold_id', name=op.f('uq_settlement_payment_hold_id'))
    )
    op.create_table('settlement_rule_set',
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('platform_fee_bps', sa.Integer(), nullable=False),
    sa.Column('platform_fee_fixed_minor', sa.BigInteger(), nullable=False),
    sa.Column('adjustment_bps_by_stars', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('minimum_payout_minor', sa.BigInteger(), nullable=False),
    sa.Column('payout_schedule', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('cancellation_fee_minor', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("payout_schedule IN ('immediate','daily')", name=op.f('ck_settlement_rule_set_schedule')),
    sa.CheckConstraint('platform_fee_bps BETWEEN 0 AND 10000 AND platform_fee_fixed_minor >= 0 AND minimum_payout_minor >= 0 AND cancellation_fee_minor >= 0', name=op.f('ck_settlement_rule_set_ranges')),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_settlement_rule_set'))
    )
    op.create_table('settlement_sandbox_balance_transaction',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('source_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_sandbox_balance_transaction'))
    )
    op.create_index(op.f('ix_settlement_sandbox_balance_transaction_created_at'), 'settlement_sandbox_balance_transaction', ['created_at'], unique=False)
    op.create_table('settlement_sandbox_event',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('body', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_sandbox_event'))
    )
    op.create_index(op.f('ix_settlement_sandbox_event_created_at'), 'settlement_sandbox_event', ['created_at'], unique=False)
    op.create_table('settlement_sandbox_object',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_sandbox_object'))
    )
    op.create_index(op.f('ix_settlement_sandbox_object_kind'), 'settlement_sandbox_object', ['kind'], unique=False)
    op.create_table('settlement_sandbox_request',
    sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('operation', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('params_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('idempotency_key', name=op.f('pk_settlement_sandbox_request'))
    )
    op.create_table('settlement_webhook_inbox',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_webhook_inbox')),
    sa.UniqueConstraint('source', 'event_id', name=op.f('uq_settlement_webhook_inbox_source_event_id'))
    )
    op.create_table('settlement_ledger_posting',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('entry_id', sa.Uuid(), nullable=False),
    sa.Column('account', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.CheckConstraint('amount_minor <> 0', name=op.f('ck_settlement_ledger_posting_nonzero')),
    sa.ForeignKeyConstraint(['entry_id'], ['settlement_ledger_entry.id'], name=op.f('fk_settlement_ledger_posting_entry_id_settlement_ledger_entry')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_ledger_posting'))
    )
    op.create_index(op.f('ix_settlement_ledger_posting_account'), 'settlement_ledger_posting', ['account'], unique=False)
    op.create_index(op.f('ix_settlement_ledger_posting_entry_id'), 'settlement_ledger_posting', ['entry_id'], unique=False)
    op.create_table('settlement_settlement',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('review_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('technician_id', sa.Uuid(), nullable=False),
    sa.Column('station_id', sa.Uuid(), nullable=True),
    sa.Column('stars', sa.Integer(), nullable=False),
    sa.Column('rule_version', sa.Integer(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('base_minor', sa.BigInteger(), nullable=False),
    sa.Column('adjustment_minor', sa.BigInteger(), nullable=False),
    sa.Column('fee_minor', sa.BigInteger(), nullable=False),
    sa.Column('payout_minor', sa.BigInteger(), nullable=False),
    sa.Column('arithmetic', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('connected_account_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('transfer_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('clawback_minor', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('transferred_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('held', 'accrued', 'transfer_pending', 'transferred')", name=op.f('ck_settlement_settlement_status')),
    sa.CheckConstraint('payout_minor >= 0', name=op.f('ck_settlement_settlement_payout')),
    sa.ForeignKeyConstraint(['rule_version'], ['settlement_rule_set.version'], name=op.f('fk_settlement_settlement_rule_version_settlement_rule_set')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_settlement')),
    sa.UniqueConstraint('order_id', name=op.f('uq_settlement_settlement_order_id')),
    sa.UniqueConstraint('transfer_id', name=op.f('uq_settlement_settlement_transfer_id'))
    )
    op.create_index(op.f('ix_settlement_settlement_station_id'), 'settlement_settlement', ['station_id'], unique=False)
    op.create_index('ix_settlement_settlement_status', 'settlement_settlement', ['status', 'created_at'], unique=False)
    op.create_index(op.f('ix_settlement_settlement_technician_id'), 'settlement_settlement', ['technician_id'], unique=False)
    for statement in (*_BALANCED, *_APPEND_ONLY):
        op.execute(statement)
    # Version 1: 15 % platform fee; 5 stars +5 %, 4 stars 0, 3 stars -10 %, 2 or fewer held for ops.
    op.bulk_insert(_rule_set, [{
        "version": 1, "platform_fee_bps": 1500, "platform_fee_fixed_minor": 0,
        "adjustment_bps_by_stars": {"5": 500, "4": 0, "3": -1000, "2": None, "1": None},
        "minimum_payout_minor": 0, "payout_schedule": "immediate", "cancellation_fee_minor": 0,
        "created_by": "migration", "created_at": datetime(2026, 11, 25, tzinfo=timezone.utc),
    }])


def downgrade() -> None:
    for table in ("settlement_ledger_entry", "settlement_ledger_posting"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    op.execute("DROP TRIGGER IF EXISTS settlement_ledger_posting_balanced ON settlement_ledger_posting")
    op.execute("DROP FUNCTION IF EXISTS settlement_refuse_change()")
    op.execute("DROP FUNCTION IF EXISTS settlement_check_entry()")
    op.drop_index(op.f('ix_settlement_settlement_technician_id'), table_name='settlement_settlement')
    op.drop_index('ix_settlement_settlement_status', table_name='settlement_settlement')
    op.drop_index(op.f('ix_settlement_settlement_station_id'), table_name='settlement_settlement')
    op.drop_table('settlement_settlement')
    op.drop_index(op.f('ix_settlement_ledger_posting_entry_id'), table_name='settlement_ledger_posting')
    op.drop_index(op.f('ix_settlement_ledger_posting_account'), table_name='settlement_ledger_posting')
    op.drop_table('settlement_ledger_posting')
    op.drop_table('settlement_webhook_inbox')
    op.drop_table('settlement_sandbox_request')
    op.drop_index(op.f('ix_settlement_sandbox_object_kind'), table_name='settlement_sandbox_object')
    op.drop_table('settlement_sandbox_object')
    op.drop_index(op.f('ix_settlement_sandbox_event_created_at'), table_name='settlement_sandbox_event')
    op.drop_table('settlement_sandbox_event')
    op.drop_index(op.f('ix_settlement_sandbox_balance_transaction_created_at'), table_name='settlement_sandbox_balance_transaction')
    op.drop_table('settlement_sandbox_balance_transaction')
    op.drop_table('settlement_rule_set')
    op.drop_table('settlement_payment')
    op.drop_index(op.f('ix_settlement_ledger_entry_settlement_id'), table_name='settlement_ledger_entry')
    op.drop_index(op.f('ix_settlement_ledger_entry_order_id'), table_name='settlement_ledger_entry')
    op.drop_index(op.f('ix_settlement_ledger_entry_created_at'), table_name='settlement_ledger_entry')
    op.drop_table('settlement_ledger_entry')
    op.drop_table('settlement_connected_account')
    op.drop_index(op.f('ix_settlement_audit_access_account_id'), table_name='settlement_audit_access')
    op.drop_table('settlement_audit_access')
