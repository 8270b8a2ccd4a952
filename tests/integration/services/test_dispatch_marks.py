"""dispatched_at is written in batches after the publish; a failed or skipped flush loses no
job (the row stays undispatched for the sweeper) and never overwrites a later state."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

from sqlalchemy import select, update

from app.db.models import Certification, JobStatus
from app.db.session import make_engine, make_session_factory
from app.devtools.harness import free_port, settings_env
from app.services.dispatch import DispatchMarks
from tests.support import ROOT
from tests.support.jobs import queue


def dispatched_at(factory, cert_id):  # type: ignore[no-untyped-def]
    with factory() as session:
        return session.scalar(
            select(Certification.dispatched_at).where(Certification.id == uuid.UUID(str(cert_id)))
        )


def wait_dispatched(factory, cert_id, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while (value := dispatched_at(factory, cert_id)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def target(client, auth) -> str:  # type: ignore[no-untyped-def]
    return client.post(
        "/v1/targets",
        json={
            "name": f"marks-{uuid.uuid4().hex[:6]}",
            "model": "m",
            "base_url": "http://127.0.0.1:9/v1",
        },
        headers=auth,
    ).get_json()["id"]


def test_post_answers_the_publish_time_and_the_row_gets_it(auth, factory, settings) -> None:  # type: ignore[no-untyped-def]
    from app.api.factory import build_app

    # A queue no worker reads, so no claim races the batch (that case is tested below).
    app = build_app(
        settings.model_copy(update={"certification_queue_name": f"nobody-{uuid.uuid4().hex[:8]}"})
    )
    client = app.test_client()
    ids, answered = [], {}
    tid = target(client, auth)
    for _ in range(5):
        r = client.post("/v1/certifications", json={"target_id": tid}, headers=auth)
        assert r.status_code == 202
        body = r.get_json()
        assert body["timings"]["dispatched_at"] is not None
        ids.append(body["id"])
        answered[body["id"]] = body["timings"]["dispatched_at"]
    for cert_id in ids:
        stored = wait_dispatched(factory, cert_id)
        assert stored is not None, "the batch never wrote dispatched_at"
        got = client.get(f"/v1/certifications/{cert_id}", headers=auth).get_json()
        assert got["timings"]["dispatched_at"] == answered[cert_id]
    app.extensions["modelcert"].dispatch.close()


def test_a_failed_flush_keeps_the_marks_for_the_next(client, auth, factory, settings) -> None:  # type: ignore[no-untyped-def]
    cert_id = queue(factory, settings, auth, target(client, auth))
    down = make_session_factory(
        make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none", pool_size=1)
    )
    marks = DispatchMarks(down, interval=3600)
    marks.mark(uuid.UUID(cert_id))
    assert marks.flush() == 0 and marks.pending() == 1  # Postgres unreachable: kept
    assert dispatched_at(factory, cert_id) is None  # the sweeper still sees it undispatched
    marks.factory = factory
    assert marks.flush() == 1 and marks.pending() == 0
    assert dispatched_at(factory, cert_id) is not None
    marks.close()


def test_a_mark_never_overwrites_what_a_worker_did(client, auth, factory, settings) -> None:  # type: ignore[no-untyped-def]
    cert_id = queue(factory, settings, auth, target(client, auth))
    # Put back before the batch ran: failed and waiting for a retry (attempt 1), or released
    # by a worker shutting down (attempt 0 again). dispatched_at is NULL on purpose (the
    # sweeper must republish), and the old mark must not fill it.
    for attempt in (1, 0):
        with factory.begin() as session:
            session.execute(
                update(Certification)
                .where(Certification.id == uuid.UUID(cert_id))
                .values(attempt=attempt, status=JobStatus.RETRYING, dispatched_at=None)
            )
        marks = DispatchMarks(factory, interval=3600)
        marks.mark(uuid.UUID(cert_id))
        assert marks.flush() == 1
        assert dispatched_at(factory, cert_id) is None
        marks.close()


def test_a_claim_before_the_batch_gets_the_publish_time(client, auth, factory, settings) -> None:  # type: ignore[no-untyped-def]
    from app.db import jobs

    cert_id = queue(factory, settings, auth, target(client, auth))
    marks = DispatchMarks(factory, interval=3600)
    published = marks.mark(uuid.UUID(cert_id))
    claim = jobs.claim_job(factory, uuid.UUID(cert_id), "test-claimer", 30)
    assert claim is not None
    claimed_at = dispatched_at(factory, cert_id)
    assert claimed_at is not None and claimed_at > published  # the claim's fallback
    assert marks.flush() == 1
    assert dispatched_at(factory, cert_id) == published
    marks.close()


def test_marks_pending_at_exit_are_written(client, auth, factory, settings) -> None:  # type: ignore[no-untyped-def]
    cert_id = queue(factory, settings, auth, target(client, auth))
    script = (
        "import uuid, sys\n"
        "from app.config import Settings\n"
        "from app.db.session import make_engine, make_session_factory\n"
        "from app.services.dispatch import DispatchMarks\n"
        "s = Settings()\n"
        "m = DispatchMarks(make_session_factory(make_engine(str(s.database_url))), "
        "interval=3600)\n"
        "m.mark(uuid.UUID(sys.argv[1]))\n"
        "print(m.pending())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, cert_id],
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "1"  # nothing flushed before exit
    assert dispatched_at(factory, cert_id) is not None  # atexit wrote it


def test_a_batch_locks_its_rows_once_whatever_join_the_planner_picks(  # type: ignore[no-untyped-def]
    client, auth, factory, settings
) -> None:
    """A planner that believes the table tiny (fresh, not analyzed yet) joins by nested loops:
    the rows must still be locked once per batch, not once per row scanned."""
    import re
    from datetime import UTC, datetime

    from sqlalchemy import text

    from app.db.jobs import MARK_SQL

    t = target(client, auth)
    ids = [queue(factory, settings, auth, t) for _ in range(12)]
    with factory() as session:
        session.execute(text("SET LOCAL enable_hashjoin = off"))
        session.execute(text("SET LOCAL enable_mergejoin = off"))
        plan = "\n".join(
            session.execute(
                text("EXPLAIN (ANALYZE) " + MARK_SQL.text),
                {"ids": ids, "ats": [datetime.now(UTC)] * len(ids)},
            ).scalars()
        )
        session.rollback()
    locks = re.findall(r"LockRows .*\(actual time=\S+ rows=(\d+) loops=(\d+)\)", plan)
    assert locks == [("12", "1")], plan


def test_a_batch_finds_its_rows_by_primary_key_even_on_a_table_never_analyzed(  # type: ignore[no-untyped-def]
    client, auth, factory, settings
) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import text

    from app.db.jobs import INDEX_ONLY, MARK_SQL

    t = target(client, auth)
    ids = [queue(factory, settings, auth, t) for _ in range(5)]
    with factory() as session:
        session.execute(INDEX_ONLY)  # as DispatchMarks runs it
        plan = "\n".join(
            session.execute(
                text("EXPLAIN " + MARK_SQL.text),
                {"ids": ids, "ats": [datetime.now(UTC)] * len(ids)},
            ).scalars()
        )
        session.rollback()
    assert "Seq Scan on certifications" not in plan, plan
