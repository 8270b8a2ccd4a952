"""What SQL this process sends, seen at the driver (psycopg): the statements SQLAlchemy
executes and db.direct's Hot statements alike, and the transaction commands psycopg sends of
its own (BEGIN, COMMIT, ROLLBACK), each a round trip."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg._connection_base import BaseConnection


@contextmanager
def statements(this_thread_only: bool = False) -> Iterator[list[str]]:
    seen: list[str] = []
    execute = psycopg.Cursor.execute
    command = BaseConnection._exec_command  # noqa: SLF001 - where psycopg sends BEGIN/COMMIT
    me = threading.get_ident()

    def mine() -> bool:
        return not this_thread_only or threading.get_ident() == me

    def record(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        try:  # (recorded after: psycopg sends a BEGIN it needs first, from within execute)
            return execute(cursor, query, *args, **kwargs)
        finally:
            if mine():
                seen.append(query if isinstance(query, str) else str(query))

    def record_command(connection: Any, sql: Any, *args: Any, **kwargs: Any) -> Any:
        if mine():
            seen.append(sql.decode() if isinstance(sql, bytes) else str(sql))
        return command(connection, sql, *args, **kwargs)

    psycopg.Cursor.execute = record  # type: ignore[method-assign]
    BaseConnection._exec_command = record_command  # type: ignore[method-assign]  # noqa: SLF001
    try:
        yield seen
    finally:
        psycopg.Cursor.execute = execute  # type: ignore[method-assign]
        BaseConnection._exec_command = command  # type: ignore[method-assign]  # noqa: SLF001
