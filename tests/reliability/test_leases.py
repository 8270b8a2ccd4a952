"""Leases: a SIGKILLed worker's job comes back within about a lease, not a visibility timeout;
a job that kills its worker every time is dead-lettered after max_attempts, never looped."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import func, select

from app.db.models import Certification, CheckResultRow, DeadLetter, JobStatus
from app.db.session import make_engine, make_session_factory
from app.devtools.harness import fresh_database
from tests.support.rows import make_token
from tests.support.stack import PrivateRedis, Stack

pytestmark = pytest.mark.slow


@pytest.fixture()
def stack(tmp_path, admin_database_url):  # type: ignore[no-untyped-def]
    redis = PrivateRedis(tmp_path)
    with fresh_database(admin_database_url) as url:
        s = Stack.create(tmp_path, url, redis.url, certification_max_retries=1)
        yield s
        s.stop()
    redis.stop()


@pytest.fixture()
def auth(stack) -> dict[str, str]:  # type: ignore[no-untyped-def]
    factory = make_session_factory(make_engine(str(stack.settings.database_url), pool_size=1))
    return {"Authorization": f"Bearer {make_token(factory, 'leases')}"}


def _submit(stack: Stack, auth, base_url: str, suite: str = "smoke") -> uuid.UUID:  # type: ignore[no-untyped-def]
    from app.api.factory import build_app

    client = build_app(stack.settings).test_client()
    target = client.post(
        "/v1/targets",
        json={
            "name": f"l-{uuid.uuid4().hex[:6]}",
            "model": "reference-model",
            "base_url": base_url,
        },
        headers=auth,
    ).get_json()["id"]
    r = client.post("/v1/certifications", json={"target_id": target, "suite": suite}, headers=auth)
    assert r.status_code == 202
    return uuid.UUID(r.get_json()["id"])


def _wait(factory, cert_id, predicate, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with factory() as session:
            row = session.get(Certification, cert_id)
            if predicate(row):
                return row
        time.sleep(0.2)
    raise AssertionError(f"condition not met in {timeout}s: {row.status} attempt {row.attempt}")


def test_killed_worker_job_resumes_elsewhere(stack, auth, reference_url) -> None:  # type: ignore[no-untyped-def]
    factory = make_session_factory(make_engine(str(stack.settings.database_url), pool_size=1))
    stack.start_beat()
    first = stack.start_worker()
    stack.wait_ready(first)
    cert_id = _submit(stack, auth, f"{reference_url}/m/slow-300/v1", suite="standard")
    _wait(factory, cert_id, lambda r: r.status is JobStatus.RUNNING and r.progress_done > 0, 60)
    killed_at = time.monotonic()
    first.kill_group()  # SIGKILL main process and children: no chance to clean up
    second = stack.start_worker()
    stack.wait_ready(second)
    row = _wait(factory, cert_id, lambda r: r.attempt == 2, 90)
    back_after = time.monotonic() - killed_at
    print(
        f"job back on a worker {back_after:.1f}s after SIGKILL "
        f"(lease {stack.settings.certification_lease_seconds}s, "
        f"visibility timeout {stack.settings.visibility_timeout}s)"
    )
    row = _wait(factory, cert_id, lambda r: r.status.value in ("succeeded", "failed"), 180)
    assert row.status is JobStatus.SUCCEEDED and row.attempt == 2
    with factory() as session:
        names = session.scalars(
            select(CheckResultRow.check_name).where(CheckResultRow.certification_id == cert_id)
        ).all()
    assert len(names) == len(set(names))


def test_poison_job_is_dead_lettered(stack, auth, reference_url) -> None:  # type: ignore[no-untyped-def]
    factory = make_session_factory(make_engine(str(stack.settings.database_url), pool_size=1))
    stack.start_beat()
    worker = stack.start_worker()
    stack.wait_ready(worker)
    cert_id = _submit(stack, auth, f"{reference_url}/m/slow-1000/v1")
    kills_by_attempt: set[int] = set()
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        with factory() as session:
            row = session.get(Certification, cert_id)
        if row.status.value in ("succeeded", "failed", "timed_out", "cancelled"):
            break
        if row.status is JobStatus.RUNNING and row.attempt not in kills_by_attempt:
            if stack.kill_children_of(worker):  # the job kills its worker child, every time
                kills_by_attempt.add(row.attempt)
        time.sleep(0.2)
    assert row.status is JobStatus.FAILED, row.status
    assert row.attempt == row.max_attempts == 2
    assert kills_by_attempt == {1, 2}
    with factory() as session:
        letters = session.scalar(
            select(func.count())
            .select_from(DeadLetter)
            .where(DeadLetter.certification_id == cert_id)
        )
    assert letters == 1
