"""The base service catalogue (admins extend it through the API).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 10:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_kind = sa.table(
    "dispatch_service_kind",
    sa.column("code", sa.String), sa.column("name", sa.String), sa.column("name_zh", sa.String),
    sa.column("required_certification", sa.String), sa.column("default_priority", sa.String),
    sa.column("base_price_minor", sa.Integer), sa.column("currency", sa.String),
    sa.column("typical_duration_min", sa.Integer), sa.column("sla_minutes", JSONB), sa.column("active", sa.Boolean),
)

BASE = [
    # code, name, name_zh, certification, priority, price (fen), minutes
    ("repair", "Gas repair", "燃气维修", "repair", "routine", 8000, 60),
    ("inspection", "Home safety inspection", "入户安检", "inspection", "routine", 0, 30),
    ("installation", "Appliance installation", "燃气具安装", "installation", "routine", 15000, 90),
    ("emergency_leak", "Gas leak emergency", "燃气泄漏抢险", "emergency", "emergency", 0, 60),
    ("meter_fault", "Meter or valve fault", "表具/阀门故障", "repair", "urgent", 0, 45),
    ("suspected_leak", "Suspected leak check", "疑似泄漏检查", "inspection", "urgent", 0, 45),
    ("stove_cleaning", "Stove cleaning", "灶具清洗", "repair", "routine", 6000, 60),
    ("range_hood_cleaning", "Range hood cleaning", "油烟机清洗", "repair", "routine", 12000, 90),
    ("hose_replacement", "Gas hose replacement", "燃气软管更换", "repair", "routine", 5000, 30),
    ("boiler_service", "Wall boiler service", "壁挂炉保养", "repair", "routine", 20000, 90),
]


def upgrade() -> None:
    op.bulk_insert(_kind, [
        {"code": c, "name": n, "name_zh": z, "required_certification": cert, "default_priority": p,
         "base_price_minor": price, "currency": "CNY", "typical_duration_min": m, "sla_minutes": {}, "active": True}
        for c, n, z, cert, p, price, m in BASE
    ])


def downgrade() -> None:
    op.execute(_kind.delete().where(_kind.c.code.in_([row[0] for row in BASE])))
