"""upgrade → downgrade → upgrade on an empty real Postgres database; models match migrations."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.db.migrate import alembic_config
from app.db.models import Base
from app.devtools.harness import new_database


@pytest.fixture()
def empty_database_url(admin_database_url: str) -> Iterator[str]:
    with new_database(admin_database_url, "mc_mig") as url:
        yield url


def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    url = empty_database_url
    engine = create_engine(url)
    try:
        config = alembic_config(url)
        command.upgrade(config, "head")
        tables = set(inspect(engine).get_table_names())
        assert {"targets", "certifications", "check_results", "samples"} <= tables
        command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        command.upgrade(config, "head")
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(
                    conn, opts={"compare_type": True, "compare_server_default": True}
                ),
                Base.metadata,
            )
        assert diff == [], f"models and migrations disagree: {diff}"
        uniques = {
            tuple(u["column_names"])
            for u in inspect(engine).get_unique_constraints("check_results")
        }
        assert ("certification_id", "check_name") in uniques
    finally:
        engine.dispose()
