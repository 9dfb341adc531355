"""Settlement: the cancellation policy in the rules, and settlements that pay a cancellation fee's share.

Existing rule versions keep their behaviour: no fee before departure, no grace, the whole fee
to the technician. Existing settlements are service settlements.

Revision ID: settlement_0004
Revises: settlement_0003
Create Date: 2026-11-30 14:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "settlement_0004"
down_revision: str | None = "settlement_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RULE_COLUMNS = (
    ("cancellation_fee_accepted_minor", sa.BigInteger(), "0"),
    ("cancellation_free_minutes", sa.Integer(), "0"),
    ("cancellation_technician_bps", sa.Integer(), "10000"),
)


def upgrade() -> None:
    for name, type_, default in _RULE_COLUMNS:
        op.add_column("settlement_rule_set", sa.Column(name, type_, nullable=False, server_default=default))
        op.alter_column("settlement_rule_set", name, server_default=None)
    op.create_check_constraint(
        op.f("ck_settlement_rule_set_cancellation_ranges"), "settlement_rule_set",
        "cancellation_fee_accepted_minor >= 0 AND cancellation_free_minutes >= 0"
        " AND cancellation_technician_bps BETWEEN 0 AND 10000")
    op.add_column("settlement_settlement", sa.Column("kind", sa.String(length=16), nullable=False,
                                                     server_default="service"))
    op.alter_column("settlement_settlement", "kind", server_default=None)
    op.alter_column("settlement_settlement", "stars", nullable=True)
    op.create_check_constraint(op.f("ck_settlement_settlement_kind"), "settlement_settlement",
                               "kind IN ('service', 'cancellation')")
    op.create_check_constraint(op.f("ck_settlement_settlement_stars"), "settlement_settlement",
                               "kind = 'cancellation' OR stars IS NOT NULL")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_settlement_settlement_stars"), "settlement_settlement", type_="check")
    op.drop_constraint(op.f("ck_settlement_settlement_kind"), "settlement_settlement", type_="check")
    # The old schema has no place for "no review": cancellation settlements keep their rows with 0 stars.
    op.execute("UPDATE settlement_settlement SET stars = 0 WHERE stars IS NULL")
    op.alter_column("settlement_settlement", "stars", nullable=False)
    op.drop_column("settlement_settlement", "kind")
    op.drop_constraint(op.f("ck_settlement_rule_set_cancellation_ranges"), "settlement_rule_set", type_="check")
    for name, _, _ in reversed(_RULE_COLUMNS):
        op.drop_column("settlement_rule_set", name)
