"""Migration 0003: the `certified` flag is backfilled from the payload's verdict, and the
finish's lookups of a target's current certificates can use the partial index even as
prepared (generic) plans, which is how psycopg runs them after a few executions."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from app.db import certificates
from app.db.migrate import alembic_config
from app.devtools.harness import new_database
from app.services import conclude


@pytest.fixture()
def migrated_to_0002(admin_database_url: str) -> Iterator[str]:
    with new_database(admin_database_url, "mc_mig3") as url:
        command.upgrade(alembic_config(url), "0002")
        yield url


def seed(conn, verdicts: list[str]) -> uuid.UUID:  # type: ignore[no-untyped-def]
    org, target = uuid.uuid4(), uuid.uuid4()
    conn.execute(
        text("INSERT INTO organizations (id, name) VALUES (:id, :name)"),
        {"id": org, "name": f"org-{org.hex[:8]}"},
    )
    conn.execute(
        text(
            "INSERT INTO targets (id, organization_id, name, provider, model, "
            "base_url) VALUES (:id, :org, 't', 'openai_compatible', 'm', "
            "'http://x/v1')"
        ),
        {"id": target, "org": org},
    )
    for verdict in verdicts:
        job = uuid.uuid4()
        conn.execute(
            text(
                "INSERT INTO certifications (id, organization_id, target_id, queue, suite_name, "
                "suite_version, suite_hash, status, priority, attempt, max_attempts, "
                "progress_done, progress_total, delivery_count) VALUES (:id, :org, :target, 'q', "
                "'smoke', '1', 'h', 'succeeded', 'normal', 1, 3, 0, 0, 1)"
            ),
            {"id": job, "org": org, "target": target},
        )
        conn.execute(
            text(
                "INSERT INTO certificates (id, certification_id, target_id, organization_id, "
                "payload, signature, key_id, issued_at, valid_until) VALUES (:id, :job, :target, "
                ":org, CAST(:payload AS jsonb), 's', 'k', now(), now() + interval '30 days')"
            ),
            {
                "id": uuid.uuid4(),
                "job": job,
                "target": target,
                "org": org,
                "payload": json.dumps({"verdict": verdict, "endpoint_fingerprint": "a"}),
            },
        )
    return target


def test_backfill_and_the_index_serves_the_finish(migrated_to_0002: str) -> None:
    engine = create_engine(migrated_to_0002)
    try:
        with engine.begin() as conn:
            target = seed(
                conn, ["certified", "certified_with_warnings", "not_certified", "inconclusive"]
            )
        command.upgrade(alembic_config(migrated_to_0002), "head")
        with engine.begin() as conn:
            flags = sorted(
                conn.execute(
                    text(
                        "SELECT payload ->> 'verdict', certified FROM certificates "
                        "WHERE target_id = :t"
                    ),
                    {"t": target},
                ).all()
            )
            assert flags == [
                ("certified", True),
                ("certified_with_warnings", True),
                ("inconclusive", False),
                ("not_certified", False),
            ]
            # A prepared statement's generic plan knows no parameter values: only a predicate
            # without parameters lets it use the partial index (seq scans off: tiny table).
            conn.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            values = {
                "of_target": f"'{target}'",
                "subject_region": "NULL",
                "fingerprint": "'b'",
                "now": "'2026-12-01T00:00:00+00:00'",
                "subject_suite": "'smoke'",
                "compare": "true",
                "is_certified": "true",
                "job_id": f"'{uuid.uuid4()}'",
                "certificate_id": f"'{uuid.uuid4()}'",
                "new_payload": "'{}'",
                "new_signature": "'s'",
                "new_key_id": "'k'",
                "certificate_valid_until": "'2026-12-31T00:00:00+00:00'",
            }
            # The finish's certificate statement looks the current ones up twice (those of
            # another fingerprint, those of its suite), and so does a first delivery's one
            # statement (conclude.py): each through the index.
            for statement, lookups in (
                (certificates.ISSUE, 2),
                (conclude._STATEMENT.statement, 2),
            ):
                compiled = statement.compile(dialect=engine.dialect)
                sql = str(compiled)
                literals = values | {
                    name: f"'{value}'"
                    for name, value in compiled.params.items()
                    if name not in values and value is not None
                }
                names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
                for n, name in enumerate(names, 1):
                    sql = sql.replace(f"%({name})s", f"${n}")
                conn.exec_driver_sql(f"PREPARE finish_lookup AS {sql}")
                plan = "\n".join(
                    row[0]
                    for row in conn.exec_driver_sql(
                        "EXPLAIN EXECUTE finish_lookup("
                        + ", ".join(literals.get(name, "NULL") for name in names)
                        + ")"
                    )
                )
                conn.exec_driver_sql("DEALLOCATE finish_lookup")
                # Either partial index of certified certificates serves (0008's, for a job's
                # baseline, is one too): on a table this small their costs tie; with a
                # target's history, ix_certificates_current holds the fewest rows and wins.
                partial = plan.count("ix_certificates_current") + plan.count(
                    "ix_certificates_certified_by_issue"
                )
                assert partial >= lookups, plan
    finally:
        engine.dispose()
