"""Engine and session factory; one engine per process."""

from __future__ import annotations

import os
import select
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg import _queries
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from app.db.base import AHEAD
from app.db.direct import HOT

# psycopg converts a query's %(name)s placeholders to $n once per distinct query, in an LRU
# cache, but only for queries up to this many characters (4096 in psycopg 3.3): longer ones
# are converted again on every execution (a regex over the text). A first delivery's end is
# one statement of about 5,500 (app/services/conclude.py): its conversion cost a twentieth
# of a job's CPU in the worker. Our statements are built once, so the cache stays small.
_queries.MAX_CACHED_STATEMENT_LENGTH = max(_queries.MAX_CACHED_STATEMENT_LENGTH, 16384)

# libpq TCP keepalives: a peer that vanished without closing (network cut) is noticed in
# about a minute instead of the kernel's two hours.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def make_engine(
    database_url: str,
    *,
    pool_size: int = 5,
    application_name: str = "modelcert",
    autocommit: bool = False,
) -> Engine:
    """`autocommit`: its connections stay in autocommit mode (see `autocommit()`)."""
    engine = create_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        # A statement's parameters are request values (names, URLs, bodies): an error's
        # message, and so every log line and traceback that carries it, shows only the SQL.
        hide_parameters=True,
        connect_args={"connect_timeout": 5, "application_name": application_name} | KEEPALIVES,
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
    )
    event.listen(engine, "connect", watch_for_fatal)
    event.listen(engine, "checkout", drop_if_closed_by_server)
    _MADE[engine] = (database_url, application_name, pool_size)
    return engine


# Every engine make_engine made (twins too), with how, so that autocommit() can make a twin.
_MADE: weakref.WeakKeyDictionary[Engine, tuple[str, str, int]] = weakref.WeakKeyDictionary()
_TWINS: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
_TWINS_LOCK = threading.Lock()


def _forget_pools() -> None:
    """In a forked child (a worker's pool process): the pooled connections it inherited stay
    the parent's; the engines, with their compiled statements, are kept (SQLAlchemy's fork
    recipe)."""
    for engine in list(_MADE):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_pools)


def watch_for_fatal(dbapi_connection: Any, record: Any) -> None:
    """libpq hands a FATAL message that arrives on an idle connection (the server shutting
    down or terminating the backend) to the notice handlers: remember it on the pool record."""

    def on_notice(diag: Any) -> None:
        if diag.severity_nonlocalized in ("FATAL", "PANIC"):
            record.info["server_closed"] = True

    add = getattr(dbapi_connection, "add_notice_handler", None)
    if add is not None:
        add(on_notice)


def drop_if_closed_by_server(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Pool checkout: refuse a connection the server has closed (restart, terminate).

    Instead of `pool_pre_ping`, which costs a round trip and counts as one more transaction
    per checkout (psycopg pings with an empty query: half the database's commits per job in
    bench e2e_throughput), look at the socket: an idle, healthy connection has nothing to
    read; one the server closed has its FATAL notice and EOF waiting. DisconnectionError
    makes the pool discard it and connect again (up to three times).
    """
    if getattr(dbapi_connection, "closed", False) or getattr(dbapi_connection, "broken", False):
        raise DisconnectionError("the connection is closed")
    try:
        fd = dbapi_connection.fileno()
    except Exception as exc:  # noqa: BLE001 - no socket: unusable
        raise DisconnectionError(str(exc)) from None
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    if not poller.poll(0):
        return  # nothing waiting: the usual case, no system call beyond this poll
    # Bytes waiting on an idle connection: let libpq read them. A closed connection fails
    # here or leaves the connection BAD; anything else (a notice, TLS bookkeeping) is harmless.
    pgconn = getattr(dbapi_connection, "pgconn", None)
    if pgconn is None:
        raise DisconnectionError("unexpected data on an idle connection")
    for _ in range(4):  # the FATAL message is read first, the EOF on the next read
        try:
            pgconn.consume_input()
            pgconn.is_busy()  # parses what was read: a FATAL reaches watch_for_fatal
        except Exception as exc:  # noqa: BLE001 - libpq: the server closed it
            raise DisconnectionError(str(exc)) from None
        if pgconn.status != 0 or record.info.get("server_closed"):  # not ConnStatus.OK
            raise DisconnectionError("the server closed the connection while it was idle")
        if not poller.poll(0):
            return
    raise DisconnectionError("an idle connection keeps receiving data")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


@contextmanager
def continued(
    factory: sessionmaker[Session], session: Session | Connection | None
) -> Iterator[Session | Connection]:
    """A unit of work in `session`, an open transaction the caller began (a request's
    authentication read in it), committed or rolled back here; a new one when None."""
    if session is None:
        with transaction(factory) as fresh:
            yield fresh
        return
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise


@contextmanager
def autocommit(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A connection whose statements each commit on their own: for a unit of work that is one
    statement, it saves the two round trips of psycopg's BEGIN and of the COMMIT.

    From the factory's engine's twin in autocommit mode, with a pool of its own (as large as
    the engine's): a Session around the statement, and switching a pooled connection's
    isolation level there and back, cost more CPU than the statement (a worker job runs two
    statements there, every API request but a POST its token lookup)."""
    with autocommit_engine(factory.kw["bind"]).connect() as conn:
        yield conn


def autocommit_engine(engine: Engine) -> Engine:
    """`engine`'s twin in autocommit mode (made on first use)."""
    twin = _TWINS.get(engine)
    if twin is not None:
        return twin
    with _TWINS_LOCK:
        if (twin := _TWINS.get(engine)) is None:
            made = _MADE.get(engine)
            if made is None:  # not one of ours: its own pool, switched per use
                twin = engine.execution_options(isolation_level="AUTOCOMMIT")
            else:
                twin = make_engine(
                    made[0], pool_size=made[2], application_name=made[1], autocommit=True
                )
            _TWINS[engine] = twin
    return twin


def compile_ahead(factory: sessionmaker[Session]) -> int:
    """Run the statements registered with base.ahead once, in a transaction rolled back (they
    match no row), so the engine's compiled cache holds them; and each direct.Hot statement
    once on the autocommit twin, which compiles it for that engine's dialect (matching no
    row, it changes nothing either). Returns how many ran."""
    with factory() as session:
        try:
            session.execute(text("SET LOCAL statement_timeout = 5000"))  # a worker's start
            for statement, params in AHEAD:
                session.execute(statement, params)
        finally:
            session.rollback()
    hot_engine = autocommit_engine(factory.kw["bind"])
    with hot_engine.connect() as conn:  # psycopg caches the converted SQL per process
        conn.execute(text("SET statement_timeout = 5000"))
        try:
            for hot in HOT:  # (first compiles its plan for this dialect)
                hot.first(hot_engine, hot.no_row, connection=conn.connection)
        finally:
            conn.execute(text("RESET statement_timeout"))
    return len(AHEAD) + len(HOT)


def dispose(engine: Engine) -> None:
    """Close the engine's pooled connections and its autocommit twin's."""
    engine.dispose()
    if (twin := _TWINS.get(engine)) is not None:
        twin.dispose()
