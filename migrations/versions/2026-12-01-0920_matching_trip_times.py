"""Observed trip times for the ETA model (placeholder: filled by the ETA helper).

Revision ID: matching_0004
Revises: matching_0003
"""

from collections.abc import Sequence

revision: str = "matching_0004"
down_revision: str | None = "matching_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
