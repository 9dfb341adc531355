"""Keyset pagination: an opaque cursor over (created_at, id), newest first."""

import base64
import json
import uuid
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import and_, or_
from sqlmodel.sql.expression import SelectOfScalar

from dispatch.errors import InvalidInput

M = TypeVar("M")
MAX_LIMIT = 200


def encode_cursor(created_at: datetime, row_id: Any) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return datetime.fromisoformat(created), row_id
    except (ValueError, TypeError) as exc:
        raise InvalidInput("malformed cursor") from exc


def paginate(statement: SelectOfScalar[M], model: Any, limit: int, cursor: str | None) -> SelectOfScalar[M]:
    """Newest first; fetch one extra row to know whether there is a next page."""
    if cursor:
        created, row_id = decode_cursor(cursor)
        try:
            key: Any = uuid.UUID(row_id)
        except ValueError:
            key = int(row_id)
        statement = statement.where(
            or_(model.created_at < created, and_(model.created_at == created, model.id < key))
        )
    return statement.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)


def page_of(rows: list[M], limit: int) -> tuple[list[M], str | None]:
    if len(rows) > limit:
        last = rows[limit - 1]
        return rows[:limit], encode_cursor(last.created_at, last.id)  # type: ignore[attr-defined]
    return rows, None
