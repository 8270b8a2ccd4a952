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

# What SQLAlchemy and psycopg send when a pool opens a new connection, whichever test or thread
# happened to need it first: not part of the work a test counts.
CONNECTION_SETUP = (
    "select pg_catalog.version()",
    "select current_schema()",
    "show transaction isolation level",
    "show standard_conforming_strings",
)


def _setup(query: str) -> bool:
    text = query.strip().lower()
    return text.startswith(CONNECTION_SETUP) or "from pg_type t" in text


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
            text = query if isinstance(query, str) else str(query)
            if mine() and not _setup(text):
                seen.append(text)

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
