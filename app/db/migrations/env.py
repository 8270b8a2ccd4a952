"""Alembic environment: URL from `-x url=...`, the config's sqlalchemy.url, or the settings."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine, pool, text

import app.db.models  # noqa: F401 - puts every table on Base.metadata
from app.db.base import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if url:
        return url
    from app.config import settings_for_process

    return str(settings_for_process().database_url)


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # app/db/migrate.upgrade_database passes the connection that holds the migration lock.
    given = config.attributes.get("connection")
    if given is not None:
        _run_on(given)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run_on(connection)
    engine.dispose()


def _run_on(connection: Connection) -> None:
    connection.execute(text("SET lock_timeout = '10s'"))
    connection.commit()  # end the autobegun transaction so Alembic's own one commits
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
