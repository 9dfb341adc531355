"""Photos leave PostgreSQL: the bytes of every job photo and certificate photo are copied into the
object store this install is configured with (kit/objects.py), named by their sha256, then the
content columns are dropped; the rows keep what names and describes each photo.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 14:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

from kit.objects import ObjectStore, digest_of, get_store

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("field_job_photo", "dispatch_certificate_photo")
_BATCH = 100  # rows read at a time: at most 800 kB each


def copy_to_store(connection: Connection, store: ObjectStore) -> int:
    """Puts each distinct photo in the store, a batch of rows at a time; a row whose bytes do not
    hash to its name stops the migration (in its transaction, so nothing is dropped) rather than
    lose the evidence."""
    copied = 0
    for table in TABLES:
        names = connection.execute(sa.text(f"SELECT DISTINCT sha256 FROM {table} ORDER BY sha256")).scalars().all()
        for start in range(0, len(names), _BATCH):
            batch = connection.execute(sa.text(f"SELECT sha256, content FROM {table} WHERE sha256 = ANY(:names)"),
                                       {"names": names[start:start + _BATCH]}).all()
            for sha256, content in batch:
                if digest_of(content) != sha256:
                    raise RuntimeError(f"{table}: the photo named {sha256} has other bytes; not moved")
                store.put(content)
                copied += 1
    return copied


def copy_from_store(connection: Connection, store: ObjectStore) -> None:
    for table in TABLES:
        for (sha256,) in connection.execute(sa.text(f"SELECT DISTINCT sha256 FROM {table}")).all():
            connection.execute(sa.text(f"UPDATE {table} SET content = :content WHERE sha256 = :sha256"),
                               {"content": store.get(sha256), "sha256": sha256})


def upgrade() -> None:
    copy_to_store(op.get_bind(), get_store())
    for table in TABLES:
        op.drop_column(table, "content")


def downgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("content", sa.LargeBinary(), nullable=True))
    copy_from_store(op.get_bind(), get_store())
    for table in TABLES:
        op.alter_column(table, "content", nullable=False)
