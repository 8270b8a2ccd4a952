"""The worker's warm-up before it forks its pool: the job path's statements end up compiled
in the engine's cache (children inherit it), and running them changes no row."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine.default import CACHE_HIT

from app.db.base import AHEAD
from app.db.direct import HOT
from app.db.models import Certificate, Certification, CheckResultRow, Target
from app.db.session import autocommit_engine, dispose, make_engine, make_session_factory
from app.services import run


def row_counts(factory) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    with factory() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Certification, Certificate, CheckResultRow, Target)
        )


def test_warm_up_compiles_the_job_path_and_changes_nothing(settings, factory) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(str(settings.database_url), pool_size=1)
    fresh = make_session_factory(engine)
    before = row_counts(factory)
    try:
        compiled = run.warm_up(fresh, settings)
        # Lease, progress, stored results, the terminal statement, the certificate's and the
        # model listing's (SQLAlchemy's); the claim with its inputs and a first delivery's
        # end (direct.Hot, on the autocommit twin).
        assert compiled == len(AHEAD) + len(HOT) and len(AHEAD) >= 6 and len(HOT) >= 2
        # Run again, each statement is found in the engine's compiled cache (what a forked
        # child inherits), and each Hot statement has its plan for the twin's dialect.
        with fresh() as session:
            try:
                hits = [
                    session.execute(statement, params).context.cache_hit
                    for statement, params in AHEAD
                ]
            finally:
                session.rollback()
        assert hits == [CACHE_HIT] * len(AHEAD)
        twin = autocommit_engine(engine)
        assert twin is not engine
        assert all(hot.planned(twin.dialect) for hot in HOT)
        assert row_counts(factory) == before
    finally:
        dispose(engine)
