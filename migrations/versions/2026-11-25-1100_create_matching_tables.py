"""create matching tables

Revision ID: matching_0001
Revises: 0002
Create Date: 2026-11-25 22:31:18.232435
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = 'matching_0001'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = ('matching',)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('matching_offer',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('technician_id', sa.Uuid(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('policy', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('distance_m', sa.Float(), nullable=False),
    sa.Column('eta_s', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decline_reason', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.CheckConstraint("status IN ('offered', 'accepted', 'declined', 'expired', 'withdrawn')", name=op.f('ck_matching_offer_status')),
    sa.ForeignKeyConstraint(['order_id'], ['dispatch_order.id'], name=op.f('fk_matching_offer_order_id_dispatch_order')),
    sa.ForeignKeyConstraint(['technician_id'], ['dispatch_technician.id'], name=op.f('fk_matching_offer_technician_id_dispatch_technician')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_matching_offer'))
    )
    op.create_index('ix_matching_offer_open_expiry', 'matching_offer', ['expires_at'], unique=False, postgresql_where=sa.text("status = 'offered'"))
    op.create_index(op.f('ix_matching_offer_order_id'), 'matching_offer', ['order_id'], unique=False)
    op.create_index(op.f('ix_matching_offer_technician_id'), 'matching_offer', ['technician_id'], unique=False)
    op.create_index('uq_matching_offer_open_order', 'matching_offer', ['order_id'], unique=True, postgresql_where=sa.text("status = 'offered'"))


def downgrade() -> None:
    op.drop_index('uq_matching_offer_open_order', table_name='matching_offer', postgresql_where=sa.text("status = 'offered'"))
    op.drop_index(op.f('ix_matching_offer_technician_id'), table_name='matching_offer')
    op.drop_index(op.f('ix_matching_offer_order_id'), table_name='matching_offer')
    op.drop_index('ix_matching_offer_open_expiry', table_name='matching_offer', postgresql_where=sa.text("status = 'offered'"))
    op.drop_table('matching_offer')
