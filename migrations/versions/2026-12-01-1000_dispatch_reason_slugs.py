"""Dispatch: reasons the system wrote in English become slugs the apps translate (dispatch/reasons.py).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (slug, how the old English text matched); a person's free text never matches these.
_SLUGS = (
    ("offer_expired", "= 'offer expired'"),
    ("sla_deadline_passed", "= 'no technician before the SLA deadline'"),
    ("no_technician_accepted", "~ '^no technician accepted after [0-9]+ offers$'"),
    ("preempted_by_emergency", "~ '^technician taken by emergency order [0-9a-f-]{36}$'"),
)


def upgrade() -> None:
    for slug, old in _SLUGS:
        op.execute(f"UPDATE dispatch_order SET status_reason = '{slug}' WHERE status_reason {old}")
        op.execute(f"UPDATE dispatch_order_event SET reason = '{slug}' WHERE reason {old}")


def downgrade() -> None:
    """The slugs stay: the old texts carried nothing the slugs and the events' payloads do not."""
