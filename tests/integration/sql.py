"""What SQL this process sends, counted at the driver (psycopg's Cursor.execute): SQLAlchemy's
executions and db.direct's Hot statements alike (BEGIN and COMMIT are not statements here)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg


@contextmanager
def statements(this_thread_only: bool = False) -> Iterator[list[str]]:
    seen: list[str] = []
    execute = psycopg.Cursor.execute
    me = threading.get_ident()

    def record(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if not this_thread_only or threading.get_ident() == me:
            seen.append(query if isinstance(query, str) else str(query))
        return execute(cursor, query, *args, **kwargs)

    psycopg.Cursor.execute = record  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        psycopg.Cursor.execute = execute  # type: ignore[method-assign]
