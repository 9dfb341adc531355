"""Dispatch: structured Chinese addresses (province, city, district, street, 小区, building, unit,
room) beside the one-line address, so the technician finds the door. Nullable: addresses saved
before keep their line only.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 14:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (column, length): the same sizes as dispatch.models.Address.
COLUMNS = (("province", 30), ("city", 30), ("district", 30), ("street", 100), ("community", 60),
           ("building", 20), ("unit", 20), ("room", 20))


def upgrade() -> None:
    for name, length in COLUMNS:
        op.add_column("dispatch_address", sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), nullable=True))


def downgrade() -> None:
    for name, _ in reversed(COLUMNS):
        op.drop_column("dispatch_address", name)
