"""Two `modelcert migrate` at once (two new pods' init containers, a hook and a pod) take turns
on the migration's advisory lock: both exit 0 and the schema is upgraded once."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, text

from app.db.migrate import MIGRATION_LOCK_KEY, alembic_config, upgrade_database
from app.devtools.harness import BIN, inherited_env, new_database

WAITING = "holds the migration lock"
UPGRADED = "Running upgrade"


@pytest.fixture()
def empty_database_url(admin_database_url: str) -> Iterator[str]:
    with new_database(admin_database_url, "mc_lock") as url:
        yield url


def head() -> str:
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None
    return revision


def advisory_locks(conn: Connection, granted: bool) -> int:
    """Advisory locks in this database (the server may hold other tests' databases), granted or
    waited for."""
    return int(
        conn.scalar(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted = :granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"granted": granted},
        )
    )


def migrate(url: str) -> subprocess.Popen[str]:
    env = inherited_env() | {
        "DATABASE_URL": url,
        "REDIS_URL": "redis://127.0.0.1:9/0",  # required by the settings, never connected to
    }
    return subprocess.Popen(
        [str(BIN / "modelcert"), "migrate"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_concurrent_migrations_wait_for_each_other(empty_database_url: str) -> None:
    engine = create_engine(empty_database_url, isolation_level="AUTOCOMMIT")
    procs: list[subprocess.Popen[str]] = []
    try:
        with engine.connect() as holder, engine.connect() as observer:
            # Hold the lock first, so both runs are certainly concurrent: each must wait.
            holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            procs = [migrate(empty_database_url), migrate(empty_database_url)]
            deadline = time.monotonic() + 120  # a bound on a hang, not a timing assertion
            while advisory_locks(observer, granted=False) < 2:
                assert all(p.poll() is None for p in procs), "a migrate did not wait"
                assert time.monotonic() < deadline, "the migrations never queued on the lock"
                time.sleep(0.1)
            holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            outputs = [p.communicate(timeout=300)[0] for p in procs]
            assert [p.returncode for p in procs] == [0, 0], outputs
            assert all(WAITING in out for out in outputs), outputs
            # One upgraded; the other waited for it and found the schema at head.
            assert sorted(UPGRADED in out for out in outputs) == [False, True], outputs
            assert observer.scalars(text("SELECT version_num FROM alembic_version")).all() == [
                head()
            ]
            assert advisory_locks(observer, granted=False) == 0
            assert advisory_locks(observer, granted=True) == 0, "the lock outlived the runs"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        engine.dispose()


def test_a_second_upgrade_changes_nothing_and_releases_the_lock(empty_database_url: str) -> None:
    upgrade_database(empty_database_url)
    upgrade_database(empty_database_url)
    engine = create_engine(empty_database_url)
    try:
        with engine.connect() as conn:
            assert conn.scalars(text("SELECT version_num FROM alembic_version")).all() == [head()]
            assert advisory_locks(conn, granted=True) == 0
    finally:
        engine.dispose()
