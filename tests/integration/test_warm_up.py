"""The worker's warm-up before it forks its pool: the job path's statements end up compiled
in the engine's cache (children inherit it), and running them changes no row."""

from __future__ import annotations

from sqlalchemy import func, select

from app.db.base import AHEAD
from app.db.models import Certificate, Certification, CheckResultRow, Target
from app.db.session import autocommit, dispose, make_engine, make_session_factory
from app.services import run


def row_counts(factory) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    with factory() as session:
        return tuple(session.scalar(select(func.count()).select_from(model)) or 0
                     for model in (Certification, Certificate, CheckResultRow, Target))


def test_warm_up_compiles_the_job_path_and_changes_nothing(settings, factory) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(str(settings.database_url), pool_size=1)
    fresh = make_session_factory(engine)
    before = row_counts(factory)
    try:
        compiled = run.warm_up(fresh, settings)
        # The claim with its inputs, lease, progress, stored results, the terminal statement,
        # the certificate's and the model listing's.
        assert compiled == len(AHEAD) >= 7
        # SQLAlchemy's per-engine compiled cache (what a forked child inherits), and that of
        # the autocommit twin the claim and a first delivery's end run on.
        assert len(engine._compiled_cache) >= compiled  # type: ignore[attr-defined]
        with autocommit(fresh) as conn:
            assert conn.engine is not engine
            assert len(conn.engine._compiled_cache) >= compiled  # type: ignore[attr-defined]
        assert row_counts(factory) == before
    finally:
        dispose(engine)
