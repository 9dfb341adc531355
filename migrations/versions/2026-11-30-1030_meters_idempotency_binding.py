"""Meters: content idempotency, per-home emergencies, device binding, commands.

- `meters_reading` is keyed by (device, read_at, digest): `digest` is a 64-bit hash of what
  the device said (the whole frame, sequence number included, or the platform's report), so
  two different reports in one instant are both kept and only a retransmission is a no-op.
  Rows stored before this revision, and rows imported without one, have digest 0.
  `raw` keeps what the device sent (frame hex, or the platform message) for operations.
- `meters_device.platform`: the IoT platform an NB-IoT device is registered under (devices
  that exist are CTWing devices: the only platform with profiles so far).
- `meters_valve_command`: the channel (concentrator TCP or platform API), delivery attempts
  with their next time and last error, for retries with a backoff and a limit.

Revision ID: meters_0002
Revises: meters_0001
Create Date: 2026-11-30 10:30:00
"""
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa

revision: str = "meters_0002"
down_revision: str | None = "meters_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Partitioned table: constraint changes on the parent apply to every partition.
    op.execute("ALTER TABLE meters_reading ADD COLUMN digest bigint NOT NULL DEFAULT 0")
    op.execute("ALTER TABLE meters_reading ADD COLUMN raw text")
    op.execute("ALTER TABLE meters_reading DROP CONSTRAINT pk_meters_reading")
    op.execute("ALTER TABLE meters_reading ADD CONSTRAINT pk_meters_reading PRIMARY KEY (device_id, read_at, digest)")

    op.add_column("meters_device", sa.Column("platform", sa.String(length=32), nullable=True))
    op.execute("UPDATE meters_device SET platform = 'ctwing' WHERE protocol = 'nbiot'")
    op.create_check_constraint("platform", "meters_device", "(protocol = 'nbiot') = (platform IS NOT NULL)")

    op.add_column("meters_valve_command", sa.Column("channel", sa.String(length=16), nullable=False,
                                                    server_default="tcp"))
    op.alter_column("meters_valve_command", "channel", server_default=None)
    op.add_column("meters_valve_command", sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
    op.alter_column("meters_valve_command", "attempts", server_default=None)
    op.add_column("meters_valve_command", sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("meters_valve_command", sa.Column("last_error", sa.String(length=200), nullable=True))
    op.create_check_constraint("channel", "meters_valve_command", "channel IN ('tcp', 'platform')")
    op.create_index("ix_meters_valve_command_due", "meters_valve_command", ["next_attempt_at"],
                    postgresql_where=sa.text("status = 'queued' AND channel = 'platform'"))


def downgrade() -> None:
    op.drop_index("ix_meters_valve_command_due", table_name="meters_valve_command",
                  postgresql_where=sa.text("status = 'queued' AND channel = 'platform'"))
    op.drop_constraint("channel", "meters_valve_command", type_="check")
    for column in ("last_error", "next_attempt_at", "attempts", "channel"):
        op.drop_column("meters_valve_command", column)
    op.drop_constraint("platform", "meters_device", type_="check")
    op.drop_column("meters_device", "platform")
    # Several readings may share a (device, read_at): keep one of each, as before this revision.
    op.execute("""DELETE FROM meters_reading r USING meters_reading o
                  WHERE r.device_id = o.device_id AND r.read_at = o.read_at AND r.digest > o.digest""")
    op.execute("ALTER TABLE meters_reading DROP CONSTRAINT pk_meters_reading")
    op.execute("ALTER TABLE meters_reading ADD CONSTRAINT pk_meters_reading PRIMARY KEY (device_id, read_at)")
    op.execute("ALTER TABLE meters_reading DROP COLUMN digest, DROP COLUMN raw")
