"""Ratings: reviews, technicians' ratings of customers, appeals, abuse and retraining flags.

Revision ID: ratings_0001
Revises: 0002
Create Date: 2026-11-25 12:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'ratings_0001'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = ('ratings',)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('ratings_flag',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('subject_type', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('subject_id', sa.Uuid(), nullable=False),
    sa.Column('evidence', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('detected_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cleared_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('customer_always_one_star', 'five_star_burst', 'retraining')", name=op.f('ck_ratings_flag_kind')),
    sa.CheckConstraint("subject_type IN ('customer','technician')", name=op.f('ck_ratings_flag_subject_type')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ratings_flag')),
    sa.UniqueConstraint('kind', 'subject_id', name=op.f('uq_ratings_flag_kind_subject_id'))
    )
    op.create_table('ratings_customer_rating',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('technician_id', sa.Uuid(), nullable=False),
    sa.Column('stars', sa.Integer(), nullable=False),
    sa.Column('tags', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('stars BETWEEN 1 AND 5', name=op.f('ck_ratings_customer_rating_stars')),
    sa.ForeignKeyConstraint(['customer_id'], ['dispatch_customer.id'], name=op.f('fk_ratings_customer_rating_customer_id_dispatch_customer')),
    sa.ForeignKeyConstraint(['order_id'], ['dispatch_order.id'], name=op.f('fk_ratings_customer_rating_order_id_dispatch_order')),
    sa.ForeignKeyConstraint(['technician_id'], ['dispatch_technician.id'], name=op.f('fk_ratings_customer_rating_technician_id_dispatch_technician')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ratings_customer_rating')),
    sa.UniqueConstraint('order_id', name=op.f('uq_ratings_customer_rating_order_id'))
    )
    op.create_index(op.f('ix_ratings_customer_rating_customer_id'), 'ratings_customer_rating', ['customer_id'], unique=False)
    op.create_table('ratings_review',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('technician_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('stars', sa.Integer(), nullable=False),
    sa.Column('tags', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('comment', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('automatic', sa.Boolean(), nullable=False),
    sa.Column('excluded', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('editable_until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finalized_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('repair', 'inspection', 'installation', 'emergency')", name=op.f('ck_ratings_review_kind')),
    sa.CheckConstraint('stars BETWEEN 1 AND 5', name=op.f('ck_ratings_review_stars')),
    sa.ForeignKeyConstraint(['customer_id'], ['dispatch_customer.id'], name=op.f('fk_ratings_review_customer_id_dispatch_customer')),
    sa.ForeignKeyConstraint(['order_id'], ['dispatch_order.id'], name=op.f('fk_ratings_review_order_id_dispatch_order')),
    sa.ForeignKeyConstraint(['technician_id'], ['dispatch_technician.id'], name=op.f('fk_ratings_review_technician_id_dispatch_technician')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ratings_review')),
    sa.UniqueConstraint('order_id', name=op.f('uq_ratings_review_order_id'))
    )
    op.create_index(op.f('ix_ratings_review_customer_id'), 'ratings_review', ['customer_id'], unique=False)
    op.create_index(op.f('ix_ratings_review_technician_id'), 'ratings_review', ['technician_id'], unique=False)
    op.create_index('ix_ratings_review_unfinalized', 'ratings_review', ['editable_until'], unique=False, postgresql_where=sa.text('finalized_at IS NULL'))
    op.create_table('ratings_appeal',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('review_id', sa.Uuid(), nullable=False),
    sa.Column('technician_id', sa.Uuid(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('decided_by', sa.Uuid(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decision_reason', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(status = 'pending') = (decided_at IS NULL)", name=op.f('ck_ratings_appeal_decided')),
    sa.CheckConstraint("status IN ('pending', 'upheld', 'rejected')", name=op.f('ck_ratings_appeal_status')),
    sa.ForeignKeyConstraint(['decided_by'], ['dispatch_account.id'], name=op.f('fk_ratings_appeal_decided_by_dispatch_account')),
    sa.ForeignKeyConstraint(['review_id'], ['ratings_review.id'], name=op.f('fk_ratings_appeal_review_id_ratings_review')),
    sa.ForeignKeyConstraint(['technician_id'], ['dispatch_technician.id'], name=op.f('fk_ratings_appeal_technician_id_dispatch_technician')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ratings_appeal')),
    sa.UniqueConstraint('review_id', name=op.f('uq_ratings_appeal_review_id'))
    )
    op.create_index(op.f('ix_ratings_appeal_status'), 'ratings_appeal', ['status'], unique=False)
    op.create_index(op.f('ix_ratings_appeal_technician_id'), 'ratings_appeal', ['technician_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_ratings_appeal_technician_id'), table_name='ratings_appeal')
    op.drop_index(op.f('ix_ratings_appeal_status'), table_name='ratings_appeal')
    op.drop_table('ratings_appeal')
    op.drop_index('ix_ratings_review_unfinalized', table_name='ratings_review', postgresql_where=sa.text('finalized_at IS NULL'))
    op.drop_index(op.f('ix_ratings_review_technician_id'), table_name='ratings_review')
    op.drop_index(op.f('ix_ratings_review_customer_id'), table_name='ratings_review')
    op.drop_table('ratings_review')
    op.drop_index(op.f('ix_ratings_customer_rating_customer_id'), table_name='ratings_customer_rating')
    op.drop_table('ratings_customer_rating')
    op.drop_table('ratings_flag')
