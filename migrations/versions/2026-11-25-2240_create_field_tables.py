"""Field execution: visits, identity checks, work reports, price changes, hazards, inspection plans.

Revision ID: field_0001
Revises: 0002
Create Date: 2026-11-25 22:40:41.985273
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from geoalchemy2 import Geography
from sqlalchemy.dialects import postgresql

revision: str = 'field_0001'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = ('field',)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('field_hazard',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('address_id', sa.Uuid(), nullable=False),
    sa.Column('station_id', sa.Uuid(), nullable=True),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('severity', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('photo_refs', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('followup_order_id', sa.Uuid(), nullable=True),
    sa.Column('found_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('fixed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('fixed_order_id', sa.Uuid(), nullable=True),
    sa.CheckConstraint("category IN ('leaking_connector', 'aged_hose', 'illegal_modification', 'no_alarm', 'ventilation', 'corroded_pipe', 'appliance_fault', 'other')", name=op.f('ck_field_hazard_category')),
    sa.CheckConstraint("severity IN ('minor', 'major', 'critical')", name=op.f('ck_field_hazard_severity')),
    sa.CheckConstraint("status IN ('open','fixed')", name=op.f('ck_field_hazard_status')),
    sa.ForeignKeyConstraint(['address_id'], ['dispatch_address.id'], name=op.f('fk_field_hazard_address_id_dispatch_address')),
    sa.ForeignKeyConstraint(['customer_id'], ['dispatch_customer.id'], name=op.f('fk_field_hazard_customer_id_dispatch_customer')),
    sa.ForeignKeyConstraint(['fixed_order_id'], ['dispatch_order.id'], name=op.f('fk_field_hazard_fixed_order_id_dispatch_order')),
    sa.ForeignKeyConstraint(['followup_order_id'], ['dispatch_order.id'], name=op.f('fk_field_hazard_followup_order_id_dispatch_order')),
    sa.ForeignKeyConstraint(['order_id'], ['dispatch_order.id'], name=op.f('fk_field_hazard_order_id_dispatch_order')),
    sa.ForeignKeyConstraint(['station_id'], ['dispatch_service_station.id'], name=op.f('fk_field_hazard_station_id_dispatch_service_station')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_field_hazard'))
    )
    op.create_index(op.f('ix_field_hazard_address_id'), 'field_hazard', ['address_id'], unique=False)
    op.create_index('ix_field_hazard_open', 'field_hazard', ['station_id', 'found_at'], unique=False, postgresql_where=sa.text("status = 'open'"))
    op.create_index(op.f('ix_field_hazard_order_id'), 'field_hazard', ['order_id'], unique=False)
    op.create_table('field_inspection_plan',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('address_id', sa.Uuid(), nullable=False),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('station_id', sa.Uuid(), nullable=False),
    sa.Column('planned_on', sa.Date(), nullable=False),
    sa.Column('slot', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("slot IN ('morning', 'afternoon', 'evening')", name=op.f('ck_field_inspection_plan_slot')),
    sa.CheckConstraint("status IN ('planned','ordered','done','no_access','replanned','exhausted')", name=op.f('ck_field_inspection_plan_status')),
    sa.ForeignKeyConstraint(['address_id'], ['dispatch_address.id'], name=op.f('fk_field_inspection_plan_address_id_dispatch_address')),
    sa.ForeignKeyConstraint(['customer_id'], ['dispatch_customer.id'], name=op.f('fk_field_inspection_plan_customer_id_dispatch_customer')),
    sa.ForeignKeyConstraint(['order_id'], ['dispatch_order.id'], name=op.f('fk_field_inspection_plan_order_id_dispatch_order')),
    sa.ForeignKeyConstraint(['station_id'], ['dispatch_service_station.id'], name=op.f('fk_field_inspection_plan_station_id_dispatch_service_station')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_field_inspection_plan'))
    )
    op.create_index('ix_field_inspection_plan_day', 'field_inspection_plan', ['station_id', 'planned_on'], unique=False)
    op.create_index(op.f('ix_field_inspection_plan_order_id'), 'field_inspection_plan', ['order_id'], unique=False)
    op.create_index('uq_field_inspection_plan_active', 'field_inspection_plan', ['address_id'], unique=True, postgresql_where=sa.text("status IN ('planned','ordered','no_access')"))
    op.create_table('field_price_change',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('amount_minor', sa.Integer(), nullable=False),
    sa.Column('authorised_minor', sa.Integer(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending','approved','rejected','superseded')", name=op.f('ck_field_price_change_status')),
    sa.CheckConstraint('amount_minor > authorised_minor', name=op.f('ck_field_price_change_above_authorised')),
    sa.ForeignKeyConstraint(['order_id'], ['dispatch_order.id'], name=op.f('fk_field_price_change_order_id_dispatch_order')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_field_price_change'))
    )
    op.create_index(op.f('ix_field_price_change_order_id'), 'field_price_change', ['order_id'], unique=False)
    op.create_index('uq_field_price_change_pending', 'field_price_change', ['order_id'], unique=True, postgresql_where=sa.text("status = 'pending'"))
    op.create_table('field_verification',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('technician_id', sa.Uuid(), nullable=False),
    sa.Column('method', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.Column('actor_role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('actor_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("method IN ('qr', 'code', 'waived')", name=op.f('ck_field_verification_method')),
    sa.ForeignKeyConstraint(['order_id'], ['dispatch_order.id'], name=op.f('fk_field_verification_order_id_dispatch_order')),
    sa.ForeignKeyConstraint(['technician_id'], ['dispatch_technician.id'], name=op.f('fk_field_verification_technician_id_dispatch_technician')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_field_verification'))
    )
    op.create_index(op.f('ix_field_verification_order_id'), 'field_verification', ['order_id'], unique=False)
    op.create_geospatial_table('field_visit',
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('technician_id', sa.Uuid(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
    sa.Column('code_issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('code_failures', sa.Integer(), nullable=False),
    sa.Column('code_locked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('verification', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('departed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('checked_in_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('arrival_distance_m', sa.Float(), nullable=True),
    sa.Column('checked_out_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('no_access_photo_ref', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
    sa.Column('no_access_location', Geography(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeogFromText', name='geography'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("outcome IN ('open','done','no_access')", name=op.f('ck_field_visit_outcome')),
    sa.CheckConstraint("verification IN ('qr', 'code', 'waived')", name=op.f('ck_field_visit_verification')),
    sa.ForeignKeyConstraint(['order_id'], ['dispatch_order.id'], name=op.f('fk_field_visit_order_id_dispatch_order')),
    sa.ForeignKeyConstraint(['technician_id'], ['dispatch_technician.id'], name=op.f('fk_field_visit_technician_id_dispatch_technician')),
    sa.PrimaryKeyConstraint('order_id', name=op.f('pk_field_visit'))
    )
    op.create_index(op.f('ix_field_visit_technician_id'), 'field_visit', ['technician_id'], unique=False)
    op.create_table('field_work_report',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('technician_id', sa.Uuid(), nullable=False),
    sa.Column('work_done', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('parts', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('final_price_minor', sa.Integer(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('photo_refs', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('valve_closed', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('final_price_minor >= 0', name=op.f('ck_field_work_report_price')),
    sa.ForeignKeyConstraint(['order_id'], ['dispatch_order.id'], name=op.f('fk_field_work_report_order_id_dispatch_order')),
    sa.ForeignKeyConstraint(['technician_id'], ['dispatch_technician.id'], name=op.f('fk_field_work_report_technician_id_dispatch_technician')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_field_work_report')),
    sa.UniqueConstraint('order_id', name=op.f('uq_field_work_report_order_id'))
    )


def downgrade() -> None:
    op.drop_table('field_work_report')
    op.drop_index(op.f('ix_field_visit_technician_id'), table_name='field_visit')
    op.drop_geospatial_table('field_visit')
    op.drop_index(op.f('ix_field_verification_order_id'), table_name='field_verification')
    op.drop_table('field_verification')
    op.drop_index('uq_field_price_change_pending', table_name='field_price_change', postgresql_where=sa.text("status = 'pending'"))
    op.drop_index(op.f('ix_field_price_change_order_id'), table_name='field_price_change')
    op.drop_table('field_price_change')
    op.drop_index('uq_field_inspection_plan_active', table_name='field_inspection_plan', postgresql_where=sa.text("status IN ('planned','ordered','no_access')"))
    op.drop_index(op.f('ix_field_inspection_plan_order_id'), table_name='field_inspection_plan')
    op.drop_index('ix_field_inspection_plan_day', table_name='field_inspection_plan')
    op.drop_table('field_inspection_plan')
    op.drop_index(op.f('ix_field_hazard_order_id'), table_name='field_hazard')
    op.drop_index('ix_field_hazard_open', table_name='field_hazard', postgresql_where=sa.text("status = 'open'"))
    op.drop_index(op.f('ix_field_hazard_address_id'), table_name='field_hazard')
    op.drop_table('field_hazard')
