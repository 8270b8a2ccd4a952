"""The pool refuses connections the server closed, without a ping per checkout."""

from __future__ import annotations

import time

from sqlalchemy import text

from app.db.session import make_engine


def backend_pid(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_the_server_terminated_is_replaced_on_checkout(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1)
    admin = make_engine(database_url, pool_size=1)
    try:
        first = backend_pid(engine)  # now idle in the pool
        assert backend_pid(engine) == first  # reused while healthy
        with admin.begin() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": first}).scalar()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the backend is gone once pg_stat_activity says so
            with admin.connect() as conn:
                if not conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": first}
                ).scalar():
                    break
            time.sleep(0.05)
        # No error reaches the caller: the checkout saw the closed socket and reconnected.
        second = backend_pid(engine)
        assert second != first
        assert backend_pid(engine) == second
    finally:
        engine.dispose()
        admin.dispose()


def test_checkout_sends_nothing_to_the_server(database_url: str) -> None:
    """No pre-ping: checking out a pooled connection costs no round trip (and no transaction)."""
    engine = make_engine(database_url, pool_size=1)
    try:
        assert not engine.pool._pre_ping  # noqa: SLF001 - the setting under test
        backend_pid(engine)
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            before = raw.pgconn.transaction_status
            assert before == 0  # idle: the checkout began no transaction
    finally:
        engine.dispose()


def test_data_waiting_on_a_healthy_connection_keeps_it(database_url: str) -> None:
    """A notification that arrives while the connection idles in the pool is read, not taken
    for a closed connection."""
    engine = make_engine(database_url, pool_size=1)
    admin = make_engine(database_url, pool_size=1)
    try:
        with engine.begin() as conn:
            conn.execute(text("LISTEN modelcert_pool_test"))
            first = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        with admin.begin() as conn:
            conn.execute(text("NOTIFY modelcert_pool_test, 'hello'"))
        time.sleep(0.2)  # the notification is on the idle connection's socket now
        assert backend_pid(engine) == first
    finally:
        engine.dispose()
        admin.dispose()


def test_autocommit_uses_a_twin_engine_whose_connections_stay_in_autocommit(
    database_url: str,
) -> None:
    from app.db.session import autocommit, make_session_factory, transaction

    engine = make_engine(database_url, pool_size=2, application_name="twin-test")
    factory = make_session_factory(engine)
    try:
        with autocommit(factory) as conn:
            assert conn.engine is not engine  # its own small pool, not the factory's
            twin_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
            conn.execute(text("CREATE TEMP TABLE IF NOT EXISTS t (x int)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))  # committed by itself
            assert conn.connection.driver_connection.autocommit is True
            assert (
                conn.execute(
                    text(
                        "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"
                    )
                ).scalar()
                == "twin-test"
            )
        with autocommit(factory) as conn:  # the same twin, the same pooled connection
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar() == twin_pid
            # Returned to the pool in between (which rolls back what is not committed).
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1
        with transaction(factory) as session:  # the factory's own connections: transactions
            assert session.execute(text("SELECT pg_backend_pid()")).scalar() != twin_pid
            first = session.execute(text("SELECT now()")).scalar()
            time.sleep(0.01)
            assert session.execute(text("SELECT now()")).scalar() == first
    finally:
        engine.dispose()


def test_a_forked_child_keeps_none_of_the_parents_pooled_connections(database_url: str) -> None:
    import os

    from app.db.session import autocommit, make_session_factory

    engine = make_engine(database_url, pool_size=2, application_name="fork-test")
    factory = make_session_factory(engine)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        with autocommit(factory) as conn:
            twin = conn.engine
            conn.execute(text("SELECT 1"))
        assert engine.pool.checkedin() == twin.pool.checkedin() == 1
        pid = os.fork()
        if pid == 0:  # the child: both pools start empty, and a new connection works
            ok = engine.pool.checkedin() == twin.pool.checkedin() == 0
            with autocommit(factory) as conn:
                ok = ok and conn.execute(text("SELECT 1")).scalar() == 1
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        with engine.connect() as conn:  # the parent's own connection still works
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
        twin.dispose()
