"""settlement: what a payout kept back to settle the technician's receivable

Revision ID: settlement_0002
Revises: settlement_0001
Create Date: 2026-11-26 09:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'settlement_0002'
down_revision: str | None = 'settlement_0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('settlement_settlement', sa.Column('receivable_offset_minor', sa.BigInteger(), nullable=False,
                                                     server_default='0'))
    op.alter_column('settlement_settlement', 'receivable_offset_minor', server_default=None)
    op.create_check_constraint(op.f('ck_settlement_settlement_receivable_offset'), 'settlement_settlement',
                               'receivable_offset_minor BETWEEN 0 AND payout_minor')


def downgrade() -> None:
    op.drop_constraint(op.f('ck_settlement_settlement_receivable_offset'), 'settlement_settlement', type_='check')
    op.drop_column('settlement_settlement', 'receivable_offset_minor')
