"""Keyset pagination with opaque cursors: the one way every list in the API pages. Lists of
resources page over (created_at, id), newest first (`page`); a stream's lines (samples) over
their integer id, in the stream's order (`page_in_order`)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.orm import Session

from app.services.errors import InvalidField


class Dated(Protocol):
    """A resource row: pages by (created_at, id)."""

    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> uuid.UUID: ...


class Numbered(Protocol):
    """A stream's line: pages by its integer id."""

    @property
    def id(self) -> int: ...


R = TypeVar("R", bound=Dated)
L = TypeVar("L", bound=Numbered)


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, _, row_id = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
        return datetime.fromisoformat(created), uuid.UUID(row_id)
    except (ValueError, UnicodeDecodeError):
        raise InvalidField(["query", "cursor"], "not a cursor this API returned") from None


def page(
    session: Session, query: Select[R], model: Any, cursor: str | None, limit: int
) -> tuple[Sequence[R], str | None]:
    """One page of `query`'s rows of `model` (newest first, after `cursor`) and the cursor
    of the next page, None on the last."""
    if cursor:
        created, last_id = decode_cursor(cursor)
        query = query.where(tuple_(model.created_at, model.id) < tuple_(created, last_id))
    rows = session.scalars(
        query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)
    ).all()
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.created_at, last.id)


def page_in_order(
    session: Session, query: Select[L], model: Any, cursor: str | None, limit: int
) -> tuple[Sequence[L], str | None]:
    """One page of `query`'s rows of `model` in the order of their integer id (a stream's
    order, oldest first), after `cursor`, and the cursor of the next page, None on the last."""
    if cursor:
        query = query.where(model.id > _decode_id_cursor(cursor))
    rows = session.scalars(query.order_by(model.id).limit(limit + 1)).all()
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], _encode_id_cursor(rows[limit - 1].id)


def _encode_id_cursor(row_id: int) -> str:
    return base64.urlsafe_b64encode(f"id|{row_id}".encode()).decode().rstrip("=")


def _decode_id_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        kind, _, value = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
        if kind != "id" or not value.isdigit() or len(value) > 18:
            raise ValueError(cursor)
        return int(value)
    except (ValueError, UnicodeDecodeError):
        raise InvalidField(["query", "cursor"], "not a cursor this API returned") from None
