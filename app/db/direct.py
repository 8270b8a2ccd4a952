"""The worker's and the API's hottest one-statement units, run on the DBAPI cursor.

SQLAlchemy builds and compiles each statement once (with the dialect's bind casts, the
types' bind and result processors); what it would do on every execution (a compiled-cache
lookup that hashes the statement's cache key, an execution context, a cursor result, a Row)
cost more CPU than the statement's round trip: about a fifth of a pool child's CPU per job
(the claim and a first delivery's end), a tenth of a POST's (the token with the target, the
insert; measured with `python -m bench`). A `Hot` statement skips that: it is compiled
once per dialect (an INSERT once per set of columns given), and each execution converts its
parameters with the types' bind processors, runs the SQL on a pooled DBAPI connection (in
autocommit, or in a Connection's transaction) and converts the row with the result
processors.

What SQLAlchemy's execution gives and this keeps: the pool (checkout events included, so a
connection the server closed is refused before use: session.drop_if_closed_by_server), the
invalidation of a connection that failed as disconnected, and the exceptions
(sqlalchemy.exc.OperationalError and its siblings, as from Connection.execute). Not kept:
engine events (before_cursor_execute listeners do not see these statements).
"""

from __future__ import annotations

import contextlib
from collections import namedtuple
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, Insert, Select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection

Statement = Select[*tuple[Any, ...]] | Insert

# The Hot statements of the job path (made with `hot`): session.compile_ahead compiles and
# runs them (matching no row) in the worker's main process before it forks.
HOT: list[Hot] = []


def hot(statement: Select[*tuple[Any, ...]], **no_row: Any) -> Hot:
    """A Hot statement registered for the warm-up; `no_row` as for Hot."""
    made = Hot(statement, no_row)
    HOT.append(made)
    return made


class _Plan:
    """One statement compiled for one dialect."""

    def __init__(self, statement: Statement, dialect: Dialect, column_keys: Sequence[str]) -> None:
        if isinstance(statement, Insert) and (
            unknown := set(column_keys) - set(statement.table.c.keys())
        ):
            # (SQLAlchemy would leave them out of the VALUES without a word)
            raise ValueError(f"no such column to insert: {', '.join(sorted(unknown))}")
        compiled = statement.compile(dialect=dialect, column_keys=list(column_keys) or None)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a Hot statement cannot have parameters rendered per execution")
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError("a Hot statement cannot have Python-side column defaults")
        self.sql = compiled.string
        self.compiled = compiled
        self.binds: dict[str, Callable[[Any], Any]] = {}
        for bind, name in compiled.bind_names.items():  # the names in the SQL
            if compiled.escaped_bind_names.get(name, name) != name:
                raise ValueError(f"bind parameter {name!r} needs escaping")
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                self.binds[name] = process
        columns = list(statement.exported_columns)  # selected, or returned by an INSERT
        self.types = [column.type.dialect_impl(dialect) for column in columns]
        self.Row: Any = namedtuple("Row", [column.key for column in columns])  # type: ignore[misc]
        # The types' result processors; some need the column's type code from the cursor
        # description (numeric), so they are looked up on the first row.
        self.results: list[tuple[int, Callable[[Any], Any]]] | None = None
        self.dialect = dialect

    def parameters(self, values: Mapping[str, Any]) -> MutableMapping[str, Any]:
        params = self.compiled.construct_params(values)  # a new dict: `values` is not changed
        for name, process in self.binds.items():
            params[name] = process(params[name])
        return params

    def row(self, raw: tuple[Any, ...], cursor: Any) -> Any:
        if self.results is None:
            description = cursor.description  # (built anew on each access: once here)
            if len(description) != len(self.types):
                raise ValueError("the statement returned other columns than it selects")
            self.results = [
                (index, process)
                for index, (type_, column) in enumerate(zip(self.types, description, strict=True))
                if (process := type_.result_processor(self.dialect, column.type_code)) is not None
            ]
        if self.results:
            values = list(raw)
            for index, convert in self.results:
                values[index] = convert(values[index])
            raw = tuple(values)
        return self.Row._make(raw)


class Hot:
    """A SELECT (its CTEs may write) or an INSERT … RETURNING, run often."""

    def __init__(self, statement: Statement, no_row: Mapping[str, Any] | None = None) -> None:
        """`no_row`: parameters under which it matches and changes no row (warm-up)."""
        self.statement = statement
        self.no_row = dict(no_row or {})
        # An INSERT's VALUES are compiled from the columns its parameters name (as SQLAlchemy
        # does): one plan per set of names.
        self._values = isinstance(statement, Insert)
        self._plans: dict[tuple[Dialect, frozenset[str]], _Plan] = {}

    def plan(self, dialect: Dialect, params: Mapping[str, Any] | None = None) -> _Plan:
        key = (dialect, frozenset(params or ()) if self._values else frozenset())
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _Plan(self.statement, dialect, sorted(key[1]))
        return plan

    def planned(self, dialect: Dialect) -> bool:
        """Whether a plan is compiled for this dialect (as the worker's warm-up does before
        it forks, so that no child compiles its own)."""
        return any(key[0] is dialect for key in self._plans)

    def on(self, conn: Connection | Session, params: Mapping[str, Any]) -> Any:
        """Its first row, on a Connection's DBAPI connection: in autocommit it commits on its
        own; otherwise it is part of the Connection's transaction (begun here if it was not,
        so that the Connection's commit() commits it). A Session runs it through SQLAlchemy."""
        if isinstance(conn, Connection):
            if not conn.in_transaction():
                conn.begin()
            return self.first(conn.engine, params, connection=conn.connection)
        return conn.execute(self.statement, params).first()

    def first(
        self,
        engine: Engine,
        params: Mapping[str, Any],
        connection: PoolProxiedConnection | None = None,
    ) -> Any:
        """Its first row (a named tuple) or None, run on one of `engine`'s connections, which
        must be in autocommit (session.autocommit_engine): the statement commits on its own.
        `connection`: one of them already checked out (left open; use `on` for one in a
        transaction)."""
        dialect = engine.dialect
        plan = self.plan(dialect, params)
        values = plan.parameters(params)
        borrowed = connection is not None
        if connection is None:
            connection = engine.raw_connection()
        cursor = None
        try:
            cursor = connection.cursor()
            cursor.execute(plan.sql, values)
            raw = cursor.fetchone()  # it returns rows (a SELECT, an INSERT … RETURNING)
            return None if raw is None else plan.row(raw, cursor)
        except dialect.loaded_dbapi.Error as exc:
            lost = dialect.is_disconnect(exc, connection.dbapi_connection, cursor)
            if lost:
                connection.invalidate(exc)
            raise DBAPIError.instance(
                plan.sql,
                values,
                exc,
                dialect.loaded_dbapi.Error,
                hide_parameters=engine.hide_parameters,
                connection_invalidated=lost,
                dialect=dialect,
            ) from exc
        finally:
            if cursor is not None:
                with contextlib.suppress(Exception):  # an invalidated connection's cursor
                    cursor.close()
            if not borrowed:
                connection.close()
