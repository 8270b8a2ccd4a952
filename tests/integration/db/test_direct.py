"""db.direct.Hot: a statement compiled by SQLAlchemy once, run on the DBAPI cursor, gives what
Connection.execute gives (typed rows, SQLAlchemy's exceptions, a dropped connection replaced)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import (
    Engine,
    Integer,
    Numeric,
    bindparam,
    cast,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from app.db.base import table_of
from app.db.direct import Hot
from app.db.models import Certification, CheckResultRow, Organization, Priority
from app.db.session import autocommit_engine, dispose, make_engine, transaction
from app.services import run

_JOBS = table_of(Certification)


@pytest.fixture()
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, pool_size=1)
    yield autocommit_engine(engine)
    dispose(engine)


def test_rows_are_typed_as_connection_execute_types_them(
    engine: Engine,
    factory,  # type: ignore[no-untyped-def]
    settings,
    client,
    auth,
) -> None:
    from tests.support.api import create_target
    from tests.support.jobs import queue

    target = create_target(client, auth, "http://127.0.0.1:9/v1")
    job_id = uuid.UUID(queue(factory, settings, auth, target))
    statement = select(
        _JOBS.c.id,
        _JOBS.c.priority,
        _JOBS.c.status,
        _JOBS.c.created_at,
        cast(literal("1.50"), Numeric(6, 2)).label("amount"),
        (bindparam("n", type_=Integer) + 1).label("next"),
    ).where(_JOBS.c.id == bindparam("job_id"))
    hot = Hot(statement, {"job_id": uuid.UUID(int=0), "n": 0})
    row = hot.first(engine, {"job_id": job_id, "n": 41})
    with engine.connect() as conn:
        expected = conn.execute(statement, {"job_id": job_id, "n": 41}).one()
    assert tuple(row) == tuple(expected)
    assert row.priority is Priority.NORMAL and row.amount == Decimal("1.50") and row.next == 42
    assert row._fields == ("id", "priority", "status", "created_at", "amount", "next")
    assert hot.first(engine, hot.no_row) is None


def test_a_claim_commits_on_its_own(engine: Engine, factory, settings, client, auth) -> None:  # type: ignore[no-untyped-def]
    from tests.support.api import create_target
    from tests.support.jobs import queue

    target = create_target(client, auth, "http://127.0.0.1:9/v1")
    job_id = uuid.UUID(queue(factory, settings, auth, target))
    claimed = run.claim_and_prepare(factory, settings, job_id, "test-direct")
    assert claimed is not None
    claim, _ = claimed
    assert claim.certification_id == job_id and claim.attempt == 1
    with transaction(factory) as session:  # another connection sees it: committed
        job = session.get(Certification, job_id)
        assert job is not None and job.status.value == "running" and job.worker == "test-direct"
    assert run.claim_and_prepare(factory, settings, job_id, "test-direct") is None


def test_errors_are_sqlalchemys_and_the_connection_goes_back(engine: Engine) -> None:
    bad = Hot(select(cast(bindparam("value"), Integer).label("n")), {"value": "0"})
    with pytest.raises(DataError) as raised:
        bad.first(engine, {"value": "not a number"})
    assert not raised.value.connection_invalidated
    assert engine.pool.checkedout() == 0
    assert bad.first(engine, {"value": "7"}).n == 7  # the pooled connection is still good
    orgs = table_of(Organization)
    add = Hot(
        select(literal(1).label("one")).add_cte(
            insert(orgs).values(id=bindparam("id"), name=bindparam("name")).cte("added")
        )
    )
    values = {"id": uuid.uuid4(), "name": f"direct-{uuid.uuid4().hex[:8]}"}
    assert add.first(engine, values).one == 1  # committed: the same insert again conflicts
    with pytest.raises(IntegrityError):
        add.first(engine, values)
    assert engine.pool.checkedout() == 0


def test_a_connection_lost_mid_statement_is_dropped_and_replaced(engine: Engine) -> None:
    pid = Hot(select(func.pg_backend_pid().label("pid")))
    first = pid.first(engine, {}).pid
    suicide = Hot(select(func.pg_terminate_backend(func.pg_backend_pid()).label("gone")))
    with pytest.raises(OperationalError) as raised:
        suicide.first(engine, {})
    assert raised.value.connection_invalidated
    assert engine.pool.checkedout() == 0
    assert pid.first(engine, {}).pid != first  # a new connection, no error


def test_statements_it_cannot_run_are_refused_when_compiled(engine: Engine) -> None:
    checks = table_of(CheckResultRow)
    defaults = Hot(
        select(literal(1).label("one")).add_cte(  # id's default is Python's uuid4
            insert(checks)
            .values(
                certification_id=bindparam("job_id"),
                check_name="c",
                outcome="passed",
                required=True,
                passed=0,
                failed=0,
                errored=0,
                total=0,
                details={},
                attempt=1,
            )
            .returning(checks.c.id)
            .cte("inserted")
        )
    )
    with pytest.raises(ValueError, match="Python-side"):
        defaults.plan(engine.dialect)
    expanding = Hot(select(_JOBS.c.id).where(_JOBS.c.id.in_(bindparam("ids", expanding=True))))
    with pytest.raises(ValueError, match="per execution"):
        expanding.plan(engine.dialect)


def test_an_insert_returning_compiles_its_values_from_the_parameters(  # type: ignore[no-untyped-def]
    engine: Engine, factory
) -> None:
    orgs = table_of(Organization)
    add = Hot(insert(orgs).returning(orgs.c.id, orgs.c.name, orgs.c.created_at))
    one = {"id": uuid.uuid4(), "name": f"direct-{uuid.uuid4().hex[:8]}"}
    row = add.first(engine, one)
    assert (row.id, row.name) == (one["id"], one["name"]) and row.created_at is not None
    with pytest.raises(ValueError, match="nmae"):  # a key no column has: refused
        add.first(engine, {**one, "id": uuid.uuid4(), "nmae": "typo"})
    # `on`: a Connection in autocommit runs it directly, a transaction through SQLAlchemy
    # (either way a row with the same fields).
    with engine.connect() as conn:
        direct = add.on(conn, {"id": uuid.uuid4(), "name": f"on-{uuid.uuid4().hex[:8]}"})
    with transaction(factory) as session:
        orm = add.on(session, {"id": uuid.uuid4(), "name": f"tx-{uuid.uuid4().hex[:8]}"})
    assert direct._fields == tuple(orm._fields) == ("id", "name", "created_at")


def test_in_a_connections_transaction_it_commits_and_rolls_back_with_it(database_url: str) -> None:  # type: ignore[no-untyped-def]
    orgs = table_of(Organization)
    add = Hot(insert(orgs).returning(orgs.c.id))
    count = select(func.count()).select_from(orgs).where(orgs.c.id == bindparam("id"))
    engine = make_engine(database_url, pool_size=1)  # not in autocommit
    try:
        kept, dropped = uuid.uuid4(), uuid.uuid4()
        with engine.connect() as conn:  # no transaction begun yet: `on` begins it
            assert add.on(conn, {"id": kept, "name": f"kept-{kept.hex[:8]}"}).id == kept
            assert conn.in_transaction()
            conn.commit()
        with engine.connect() as conn:
            add.on(conn, {"id": dropped, "name": f"dropped-{dropped.hex[:8]}"})
            conn.rollback()
        with engine.connect() as conn:
            assert conn.execute(count, {"id": kept}).scalar() == 1
            assert conn.execute(count, {"id": dropped}).scalar() == 0
    finally:
        dispose(engine)
