"""create dispatch tables

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 22:23:50.903890
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from geoalchemy2 import Geography
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("dispatch",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table('dispatch_account',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
    sa.Column('password_hash', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('display_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("role IN ('customer', 'technician', 'auditor', 'admin')", name=op.f('ck_dispatch_account_role')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_account')),
    sa.UniqueConstraint('email', name=op.f('uq_dispatch_account_email'))
    )
    op.create_table('dispatch_outbox',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('topic', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=1000), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_outbox'))
    )
    op.create_index('ix_dispatch_outbox_pending', 'dispatch_outbox', ['id'], unique=False, postgresql_where=sa.text('delivered_at IS NULL'))
    op.create_table('dispatch_service_kind',
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('name_zh', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('required_certification', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('default_priority', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('base_price_minor', sa.Integer(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('typical_duration_min', sa.Integer(), nullable=False),
    sa.Column('sla_minutes', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.CheckConstraint("required_certification IN ('repair', 'inspection', 'installation', 'emergency')", name=op.f('ck_dispatch_service_kind_cert')),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_dispatch_service_kind'))
    )
    op.create_geospatial_table('dispatch_service_station',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('city', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('location', Geography(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeogFromText', name='geography', nullable=False), nullable=False),
    sa.Column('service_area', Geography(geometry_type='POLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeogFromText', name='geography', nullable=False), nullable=False),
    sa.Column('daily_capacity', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_service_station'))
    )
    op.create_geospatial_index('idx_dispatch_service_station_location', 'dispatch_service_station', ['location'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_index('idx_dispatch_service_station_service_area', 'dispatch_service_station', ['service_area'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_dispatch_service_station_city'), 'dispatch_service_station', ['city'], unique=False)
    op.create_table('dispatch_customer',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['dispatch_account.id'], name=op.f('fk_dispatch_customer_account_id_dispatch_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_customer')),
    sa.UniqueConstraint('account_id', name=op.f('uq_dispatch_customer_account_id'))
    )
    op.create_table('dispatch_idempotency_record',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('route', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('request_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('response_status', sa.Integer(), nullable=False),
    sa.Column('response_body', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['dispatch_account.id'], name=op.f('fk_dispatch_idempotency_record_account_id_dispatch_account')),
    sa.PrimaryKeyConstraint('account_id', 'key', name=op.f('pk_dispatch_idempotency_record'))
    )
    op.create_geospatial_table('dispatch_technician',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('station_id', sa.Uuid(), nullable=True),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('photo_ref', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('onboarding', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('max_jobs', sa.Integer(), nullable=False),
    sa.Column('last_location', Geography(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeogFromText', name='geography'), nullable=True),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('idle_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("onboarding IN ('applicant','active')", name=op.f('ck_dispatch_technician_onboarding')),
    sa.CheckConstraint("status IN ('offline','online','busy','suspended')", name=op.f('ck_dispatch_technician_status')),
    sa.ForeignKeyConstraint(['account_id'], ['dispatch_account.id'], name=op.f('fk_dispatch_technician_account_id_dispatch_account')),
    sa.ForeignKeyConstraint(['station_id'], ['dispatch_service_station.id'], name=op.f('fk_dispatch_technician_station_id_dispatch_service_station')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_technician')),
    sa.UniqueConstraint('account_id', name=op.f('uq_dispatch_technician_account_id'))
    )
    op.create_geospatial_index('idx_dispatch_technician_last_location', 'dispatch_technician', ['last_location'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_dispatch_technician_station_id'), 'dispatch_technician', ['station_id'], unique=False)
    op.create_geospatial_table('dispatch_address',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('line', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('location', Geography(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeogFromText', name='geography', nullable=False), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['dispatch_customer.id'], name=op.f('fk_dispatch_address_customer_id_dispatch_customer')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_address'))
    )
    op.create_geospatial_index('idx_dispatch_address_location', 'dispatch_address', ['location'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_dispatch_address_customer_id'), 'dispatch_address', ['customer_id'], unique=False)
    op.create_table('dispatch_certification',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('technician_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('number', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('issuer', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('decided_by', sa.Uuid(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decision_reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('repair', 'inspection', 'installation', 'emergency')", name=op.f('ck_dispatch_certification_kind')),
    sa.CheckConstraint("status IN ('pending','verified','rejected','revoked')", name=op.f('ck_dispatch_certification_status')),
    sa.CheckConstraint('valid_until > valid_from', name=op.f('ck_dispatch_certification_validity')),
    sa.ForeignKeyConstraint(['decided_by'], ['dispatch_account.id'], name=op.f('fk_dispatch_certification_decided_by_dispatch_account')),
    sa.ForeignKeyConstraint(['technician_id'], ['dispatch_technician.id'], name=op.f('fk_dispatch_certification_technician_id_dispatch_technician')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_certification')),
    sa.UniqueConstraint('issuer', 'number', name=op.f('uq_dispatch_certification_issuer_number'))
    )
    op.create_index(op.f('ix_dispatch_certification_technician_id'), 'dispatch_certification', ['technician_id'], unique=False)
    op.create_table('dispatch_customer_block',
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('technician_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['dispatch_customer.id'], name=op.f('fk_dispatch_customer_block_customer_id_dispatch_customer')),
    sa.ForeignKeyConstraint(['technician_id'], ['dispatch_technician.id'], name=op.f('fk_dispatch_customer_block_technician_id_dispatch_technician')),
    sa.PrimaryKeyConstraint('customer_id', 'technician_id', name=op.f('pk_dispatch_customer_block'))
    )
    op.create_geospatial_table('dispatch_order',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('address_id', sa.Uuid(), nullable=False),
    sa.Column('location', Geography(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeogFromText', name='geography', nullable=False), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('required_certification', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('priority', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('sla_deadline', sa.DateTime(timezone=True), nullable=False),
    sa.Column('preferred_technician_id', sa.Uuid(), nullable=True),
    sa.Column('technician_id', sa.Uuid(), nullable=True),
    sa.Column('price_estimate_minor', sa.Integer(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('status_reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("priority IN ('emergency', 'urgent', 'routine')", name=op.f('ck_dispatch_order_priority')),
    sa.CheckConstraint("source IN ('customer', 'meter', 'alarm', 'followup')", name=op.f('ck_dispatch_order_source')),
    sa.CheckConstraint('price_estimate_minor >= 0', name=op.f('ck_dispatch_order_price')),
    sa.ForeignKeyConstraint(['address_id'], ['dispatch_address.id'], name=op.f('fk_dispatch_order_address_id_dispatch_address')),
    sa.ForeignKeyConstraint(['customer_id'], ['dispatch_customer.id'], name=op.f('fk_dispatch_order_customer_id_dispatch_customer')),
    sa.ForeignKeyConstraint(['kind'], ['dispatch_service_kind.code'], name=op.f('fk_dispatch_order_kind_dispatch_service_kind')),
    sa.ForeignKeyConstraint(['preferred_technician_id'], ['dispatch_technician.id'], name=op.f('fk_dispatch_order_preferred_technician_id_dispatch_technician')),
    sa.ForeignKeyConstraint(['technician_id'], ['dispatch_technician.id'], name=op.f('fk_dispatch_order_technician_id_dispatch_technician')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_order'))
    )
    op.create_geospatial_index('idx_dispatch_order_location', 'dispatch_order', ['location'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_dispatch_order_customer_id'), 'dispatch_order', ['customer_id'], unique=False)
    op.create_index('ix_dispatch_order_open', 'dispatch_order', ['status', 'priority', 'created_at'], unique=False)
    op.create_index(op.f('ix_dispatch_order_technician_id'), 'dispatch_order', ['technician_id'], unique=False)
    op.create_table('dispatch_training_record',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('technician_id', sa.Uuid(), nullable=False),
    sa.Column('record_type', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('held_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('score', sa.Integer(), nullable=True),
    sa.Column('passed', sa.Boolean(), nullable=True),
    sa.Column('certification_id', sa.Uuid(), nullable=True),
    sa.Column('recorded_by', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('repair', 'inspection', 'installation', 'emergency')", name=op.f('ck_dispatch_training_record_kind')),
    sa.CheckConstraint("record_type IN ('training','exam')", name=op.f('ck_dispatch_training_record_record_type')),
    sa.ForeignKeyConstraint(['certification_id'], ['dispatch_certification.id'], name=op.f('fk_dispatch_training_record_certification_id_dispatch_certification')),
    sa.ForeignKeyConstraint(['recorded_by'], ['dispatch_account.id'], name=op.f('fk_dispatch_training_record_recorded_by_dispatch_account')),
    sa.ForeignKeyConstraint(['technician_id'], ['dispatch_technician.id'], name=op.f('fk_dispatch_training_record_technician_id_dispatch_technician')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_training_record'))
    )
    op.create_index(op.f('ix_dispatch_training_record_technician_id'), 'dispatch_training_record', ['technician_id'], unique=False)
    op.create_table('dispatch_order_event',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('from_status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('to_status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('actor_role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('actor_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['dispatch_order.id'], name=op.f('fk_dispatch_order_event_order_id_dispatch_order')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_order_event'))
    )
    op.create_index(op.f('ix_dispatch_order_event_order_id'), 'dispatch_order_event', ['order_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_dispatch_order_event_order_id'), table_name='dispatch_order_event')
    op.drop_table('dispatch_order_event')
    op.drop_index(op.f('ix_dispatch_training_record_technician_id'), table_name='dispatch_training_record')
    op.drop_table('dispatch_training_record')
    op.drop_index(op.f('ix_dispatch_order_technician_id'), table_name='dispatch_order')
    op.drop_index('ix_dispatch_order_open', table_name='dispatch_order')
    op.drop_index(op.f('ix_dispatch_order_customer_id'), table_name='dispatch_order')
    op.drop_geospatial_index('idx_dispatch_order_location', table_name='dispatch_order', postgresql_using='gist', column_name='location')
    op.drop_geospatial_table('dispatch_order')
    op.drop_table('dispatch_customer_block')
    op.drop_index(op.f('ix_dispatch_certification_technician_id'), table_name='dispatch_certification')
    op.drop_table('dispatch_certification')
    op.drop_index(op.f('ix_dispatch_address_customer_id'), table_name='dispatch_address')
    op.drop_geospatial_index('idx_dispatch_address_location', table_name='dispatch_address', postgresql_using='gist', column_name='location')
    op.drop_geospatial_table('dispatch_address')
    op.drop_index(op.f('ix_dispatch_technician_station_id'), table_name='dispatch_technician')
    op.drop_geospatial_index('idx_dispatch_technician_last_location', table_name='dispatch_technician', postgresql_using='gist', column_name='last_location')
    op.drop_geospatial_table('dispatch_technician')
    op.drop_table('dispatch_idempotency_record')
    op.drop_table('dispatch_customer')
    op.drop_index(op.f('ix_dispatch_service_station_city'), table_name='dispatch_service_station')
    op.drop_geospatial_index('idx_dispatch_service_station_service_area', table_name='dispatch_service_station', postgresql_using='gist', column_name='service_area')
    op.drop_geospatial_index('idx_dispatch_service_station_location', table_name='dispatch_service_station', postgresql_using='gist', column_name='location')
    op.drop_geospatial_table('dispatch_service_station')
    op.drop_table('dispatch_service_kind')
    op.drop_index('ix_dispatch_outbox_pending', table_name='dispatch_outbox', postgresql_where=sa.text('delivered_at IS NULL'))
    op.drop_table('dispatch_outbox')
    op.drop_table('dispatch_account')
