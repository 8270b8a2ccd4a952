"""Alembic's upgrade, as `modelcert migrate`, the dev stack and the tests run it.

The migrations are package data (`app/db/migrations/`), so a plain wheel install can migrate:
no alembic.ini is needed (the one at the repository's root is for developers' `alembic`
commands and points here too).

Several runs may start at once (every new api and worker pod runs `modelcert migrate` in an
init container, and an Argo CD or Helm hook may too): they take turns on a Postgres advisory
lock, so the first upgrades and the others, once it is done, find the schema at head and
change nothing. The lock is held by the session that runs the migrations, so it ends with it
(a pooler in transaction mode, such as PgBouncer's, cannot hold it: migrate on a direct
connection).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Session-level advisory lock key, a signed 64-bit integer: the bytes of "mcmigrat".
MIGRATION_LOCK_KEY = int.from_bytes(b"mcmigrat", "big")

log = logging.getLogger(__name__)


def alembic_config(url: str | None = None) -> Config:
    """A Config for the package's migrations; logging is left to the caller (env.py configures
    it only from an ini file)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_database(url: str, revision: str = "head") -> None:
    from alembic import command
    from sqlalchemy import create_engine, pool, text

    config = alembic_config(url)
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            key = {"key": MIGRATION_LOCK_KEY}
            if not connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), key):
                # With no handler configured this still reaches stderr (logging.lastResort).
                log.warning(
                    "another `modelcert migrate` holds the migration lock "
                    "(pg_advisory_lock %d): waiting for it to finish",
                    MIGRATION_LOCK_KEY,
                )
                connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
            connection.commit()  # the lock is the session's: it outlives this transaction
            # The migrations' env.py runs on this connection, so the lock covers the upgrade.
            # It is released when the connection closes (NullPool: the session ends), even on
            # error.
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
