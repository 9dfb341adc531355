"""Keyset pagination: an opaque cursor over (created_at, id), newest first."""

import base64
import binascii
import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import and_, or_
from sqlmodel.sql.expression import SelectOfScalar

from kit.errors import InvalidInput

M = TypeVar("M")
MAX_LIMIT = 200
_BIGINT = range(-(2**63), 2**63)
_INTEGER = re.compile(r"-?[0-9]{1,19}")


class InvalidCursor(InvalidInput):
    """The pagination cursor is not one this server issued; start again without it."""

    slug = "invalid-cursor"


def encode_cursor(created_at: datetime, row_id: Any) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The cursor is client input: anything but [zoned time, UUID or bigint id] is refused here,
    before a value of the wrong type or range reaches the database driver."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not (isinstance(decoded, list) and len(decoded) == 2 and all(isinstance(v, str) for v in decoded)):
            raise InvalidCursor()
        created, row_id = datetime.fromisoformat(decoded[0]), decoded[1]
        if created.tzinfo is None or not (_is_uuid(row_id) or _is_bigint(row_id)):
            raise InvalidCursor()
        return created.astimezone(timezone.utc), row_id
    except (ValueError, TypeError, OverflowError, binascii.Error) as exc:
        raise InvalidCursor() from exc


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _is_bigint(value: str) -> bool:
    return _INTEGER.fullmatch(value) is not None and int(value) in _BIGINT


def _row_key(model: Any, row_id: str) -> uuid.UUID | int:
    """The id in the column's own type (UUID or bigint): a cursor from another list is refused."""
    if model.__table__.c.id.type.python_type is uuid.UUID:
        if not _is_uuid(row_id):
            raise InvalidCursor()
        return uuid.UUID(row_id)
    if not _is_bigint(row_id):
        raise InvalidCursor()
    return int(row_id)


def paginate(statement: SelectOfScalar[M], model: Any, limit: int, cursor: str | None) -> SelectOfScalar[M]:
    """Newest first; fetch one extra row to know whether there is a next page."""
    if cursor:
        created, row_id = decode_cursor(cursor)
        key = _row_key(model, row_id)
        statement = statement.where(
            or_(model.created_at < created, and_(model.created_at == created, model.id < key))
        )
    return statement.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)


def page_of(rows: list[M], limit: int) -> tuple[list[M], str | None]:
    if len(rows) > limit:
        last = rows[limit - 1]
        return rows[:limit], encode_cursor(last.created_at, last.id)  # type: ignore[attr-defined]
    return rows, None
