"""Meters: concentrators, devices, partitioned readings, quarantine, inbox, faults, valve
commands, reminders.

`meters_reading` is declared by hand: PostgreSQL range partitioning on `read_at`, one
partition per month. This migration creates a window around today; the function
`meters_ensure_reading_partitions(first_month, months)` creates later months (run by
`gasdispatch meters partitions`). A default partition catches readings whose meter clock is
far off, so a bad clock never loses a reading.

Revision ID: meters_0001
Revises: 0002
Create Date: 2026-11-25 13:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'meters_0001'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = ('meters',)
depends_on: str | Sequence[str] | None = None


_READING_DDL = """
CREATE TABLE meters_reading (
    device_id uuid NOT NULL,
    read_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    volume_m3 double precision,
    lel_pct double precision,
    valve varchar(16),
    battery_low boolean,
    alarm boolean,
    tamper boolean,
    CONSTRAINT pk_meters_reading PRIMARY KEY (device_id, read_at)
) PARTITION BY RANGE (read_at)
"""

_PARTITION_FUNCTION = """
CREATE FUNCTION meters_ensure_reading_partitions(first_month date, months integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    month_start date;
    created integer := 0;
    name text;
BEGIN
    FOR i IN 0 .. months - 1 LOOP
        month_start := (date_trunc('month', first_month) + make_interval(months => i))::date;
        name := 'meters_reading_' || to_char(month_start, 'YYYYMM');
        IF to_regclass(name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF meters_reading FOR VALUES FROM (%L) TO (%L)',
                name, month_start::timestamp AT TIME ZONE 'UTC',
                (month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END $$;
"""


def upgrade() -> None:
    op.create_table('meters_concentrator',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_meters_concentrator')),
    sa.UniqueConstraint('code', name=op.f('uq_meters_concentrator_code'))
    )
    op.create_table('meters_inbox',
    sa.Column('platform', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('platform', 'message_id', name=op.f('pk_meters_inbox'))
    )
    op.create_table('meters_quarantine',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('external_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('protocol', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('raw', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_meters_quarantine'))
    )
    op.create_index(op.f('ix_meters_quarantine_external_id'), 'meters_quarantine', ['external_id'], unique=False)
    op.create_table('meters_device',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('protocol', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('external_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('product', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('address_id', sa.Uuid(), nullable=False),
    sa.Column('concentrator_id', sa.Uuid(), nullable=True),
    sa.Column('has_valve', sa.Boolean(), nullable=False),
    sa.Column('meter_type', sa.Integer(), nullable=False),
    sa.Column('appliances', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('report_interval_s', sa.Integer(), nullable=False),
    sa.Column('installed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('meter', 'detector')", name=op.f('ck_meters_device_kind')),
    sa.CheckConstraint("protocol IN ('cjt188', 'mbus', 'nbiot')", name=op.f('ck_meters_device_protocol')),
    sa.CheckConstraint('report_interval_s > 0', name=op.f('ck_meters_device_interval')),
    sa.ForeignKeyConstraint(['address_id'], ['dispatch_address.id'], name=op.f('fk_meters_device_address_id_dispatch_address')),
    sa.ForeignKeyConstraint(['concentrator_id'], ['meters_concentrator.id'], name=op.f('fk_meters_device_concentrator_id_meters_concentrator')),
    sa.ForeignKeyConstraint(['customer_id'], ['dispatch_customer.id'], name=op.f('fk_meters_device_customer_id_dispatch_customer')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_meters_device')),
    sa.UniqueConstraint('external_id', name=op.f('uq_meters_device_external_id'))
    )
    op.create_index(op.f('ix_meters_device_address_id'), 'meters_device', ['address_id'], unique=False)
    op.create_index(op.f('ix_meters_device_customer_id'), 'meters_device', ['customer_id'], unique=False)
    op.create_table('meters_reminder',
    sa.Column('address_id', sa.Uuid(), nullable=False),
    sa.Column('appliance_kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('last_serviced_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_reminded_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("appliance_kind IN ('boiler', 'stove', 'hose')", name=op.f('ck_meters_reminder_appliance_kind')),
    sa.ForeignKeyConstraint(['address_id'], ['dispatch_address.id'], name=op.f('fk_meters_reminder_address_id_dispatch_address')),
    sa.ForeignKeyConstraint(['customer_id'], ['dispatch_customer.id'], name=op.f('fk_meters_reminder_customer_id_dispatch_customer')),
    sa.PrimaryKeyConstraint('address_id', 'appliance_kind', name=op.f('pk_meters_reminder'))
    )
    op.create_table('meters_fault',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('device_id', sa.Uuid(), nullable=False),
    sa.Column('fault_kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=True),
    sa.Column('occurrences', sa.Integer(), nullable=False),
    sa.Column('notes', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cleared_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("fault_kind IN ('methane_alarm', 'valve_abnormal', 'battery_low', 'tamper', 'meter_stopped', 'comm_lost', 'suspected_leak')", name=op.f('ck_meters_fault_fault_kind')),
    sa.ForeignKeyConstraint(['device_id'], ['meters_device.id'], name=op.f('fk_meters_fault_device_id_meters_device')),
    sa.ForeignKeyConstraint(['order_id'], ['dispatch_order.id'], name=op.f('fk_meters_fault_order_id_dispatch_order')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_meters_fault'))
    )
    op.create_index(op.f('ix_meters_fault_device_id'), 'meters_fault', ['device_id'], unique=False)
    op.create_index(op.f('ix_meters_fault_order_id'), 'meters_fault', ['order_id'], unique=False)
    op.create_index('uq_meters_fault_open', 'meters_fault', ['device_id', 'fault_kind'], unique=True, postgresql_where=sa.text('closed_at IS NULL'))
    op.create_table('meters_valve_command',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('device_id', sa.Uuid(), nullable=False),
    sa.Column('fault_id', sa.Uuid(), nullable=True),
    sa.Column('command', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('frame_hex', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('reply_hex', sa.String(length=600), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('replied_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'sent', 'acknowledged', 'failed')", name=op.f('ck_meters_valve_command_status')),
    sa.ForeignKeyConstraint(['device_id'], ['meters_device.id'], name=op.f('fk_meters_valve_command_device_id_meters_device')),
    sa.ForeignKeyConstraint(['fault_id'], ['meters_fault.id'], name=op.f('fk_meters_valve_command_fault_id_meters_fault')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_meters_valve_command'))
    )
    op.create_index(op.f('ix_meters_valve_command_device_id'), 'meters_valve_command', ['device_id'], unique=False)
    op.create_index('ix_meters_valve_command_queued', 'meters_valve_command', ['device_id'], unique=False, postgresql_where=sa.text("status = 'queued'"))
    op.execute(_READING_DDL)
    op.execute("CREATE TABLE meters_reading_default PARTITION OF meters_reading DEFAULT")
    op.execute(_PARTITION_FUNCTION)
    op.execute("SELECT meters_ensure_reading_partitions("
               "(date_trunc('month', now()) - interval '12 months')::date, 16)")


def downgrade() -> None:
    op.execute("DROP FUNCTION meters_ensure_reading_partitions(date, integer)")
    op.execute("DROP TABLE meters_reading")  # drops its partitions
    op.drop_index('ix_meters_valve_command_queued', table_name='meters_valve_command', postgresql_where=sa.text("status = 'queued'"))
    op.drop_index(op.f('ix_meters_valve_command_device_id'), table_name='meters_valve_command')
    op.drop_table('meters_valve_command')
    op.drop_index('uq_meters_fault_open', table_name='meters_fault', postgresql_where=sa.text('closed_at IS NULL'))
    op.drop_index(op.f('ix_meters_fault_order_id'), table_name='meters_fault')
    op.drop_index(op.f('ix_meters_fault_device_id'), table_name='meters_fault')
    op.drop_table('meters_fault')
    op.drop_table('meters_reminder')
    op.drop_index(op.f('ix_meters_device_customer_id'), table_name='meters_device')
    op.drop_index(op.f('ix_meters_device_address_id'), table_name='meters_device')
    op.drop_table('meters_device')
    op.drop_index(op.f('ix_meters_quarantine_external_id'), table_name='meters_quarantine')
    op.drop_table('meters_quarantine')
    op.drop_table('meters_inbox')
    op.drop_table('meters_concentrator')
