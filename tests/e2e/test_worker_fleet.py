"""Dedicated worker processes: specialised queues, priorities, timeouts, shared concurrency
limits across two workers, graceful shutdown. Real processes, no mocks."""

from __future__ import annotations

import signal
import time
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from app.db.models import Certification, CheckResultRow
from tests.support.api import certify, create_target, wait_running_with_a_checkpoint, wait_terminal
from tests.support.workers import node_name, queue_worker

pytestmark = pytest.mark.usefixtures("beat")
REGION = "eu-west-1"


def regional_target(client, auth, base_url: str, region: str = REGION) -> str:  # type: ignore[no-untyped-def]
    """A target whose only endpoint is in `region`: its jobs go to the queue the deployment
    maps that region to (tests/conftest.py)."""
    return create_target(client, auth, None, endpoints={region: base_url})


@pytest.fixture(scope="module")
def regional_queue(settings) -> str:  # type: ignore[no-untyped-def]
    return settings.region_queues[REGION]  # type: ignore[no-any-return]


def test_regional_queue_priorities_and_soft_timeout(
    client, auth, reference_url, settings, factory, worker, regional_queue, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """A backlog on the regional queue: high, then normal, then low, all on the regional
    worker; then a job longer than CERTIFICATION_TIMEOUT ends timed_out with its evidence."""
    target = regional_target(client, auth, f"{reference_url}/v1")
    ids = {
        p: certify(client, auth, target, region=REGION, priority=p)
        for p in ("low", "normal", "high")
    }  # created worst first
    time.sleep(1)
    for cert_id in ids.values():  # the session worker does not consume the regional queue
        assert (
            client.get(f"/v1/certifications/{cert_id}", headers=auth).get_json()["status"]
            == "queued"
        )
    proc, _ = queue_worker(
        settings,
        tmp_path / "regional.log",
        regional_queue,
        CERTIFICATION_CONCURRENCY="1",
        CERTIFICATION_TIMEOUT="10",
    )
    try:
        for cert_id in ids.values():
            assert wait_terminal(client, auth, cert_id)["status"] == "succeeded"
        with factory() as session:
            rows = {p: session.get(Certification, uuid.UUID(c)) for p, c in ids.items()}
        assert rows["high"].started_at < rows["normal"].started_at < rows["low"].started_at
        assert {r.worker for r in rows.values()} == {node_name(proc)}
        assert node_name(proc) != node_name(worker)

        slow = regional_target(client, auth, f"{reference_url}/m/slow-3000/v1")
        cert = wait_terminal(
            client, auth, certify(client, auth, slow, region=REGION, suite="standard"), timeout=120
        )
        assert cert["status"] == "timed_out", cert
        assert cert["error"]["cause"] == "timeout" and cert["verdict"] is None
        assert cert["checks"], "checks finished before the soft limit are kept"
        # The child survived the soft limit and takes the next job.
        after = wait_terminal(client, auth, certify(client, auth, target, region=REGION))
        assert after["status"] == "succeeded"
    finally:
        proc.stop()


def test_two_workers_never_exceed_the_declared_concurrency(
    client, auth, reference_url, settings, factory, worker, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    scope = "slow-301"
    second, _ = queue_worker(settings, tmp_path / "second.log")
    try:
        httpx.post(f"{reference_url}/_stats/reset")
        target = create_target(
            client, auth, f"{reference_url}/m/{scope}/v1", rate_limit={"max_concurrency": 2}
        )
        ids = [certify(client, auth, target) for _ in range(4)]
        for cert_id in ids:
            assert wait_terminal(client, auth, cert_id, timeout=120)["status"] == "succeeded"
        stats = httpx.get(f"{reference_url}/_stats").json()["by_scope"][scope]
        print(f"requests {stats['total']}, peak in flight {stats['peak_in_flight']} (limit 2)")
        assert stats["total"] >= 4 * 15
        assert stats["peak_in_flight"] <= 2
        with factory() as session:
            workers = set(
                session.scalars(
                    select(Certification.worker).where(
                        Certification.id.in_([uuid.UUID(i) for i in ids])
                    )
                )
            )
        assert workers == {node_name(worker), node_name(second)}  # both took jobs
    finally:
        second.stop()


def test_declared_rps_keeps_the_endpoint_from_rate_limiting_us(
    client, auth, reference_url, worker
) -> None:  # type: ignore[no-untyped-def]
    """The shared token bucket spaces requests at the declared rate: an endpoint that allows
    5 req/s never has to answer 429 to a target declaring 4 req/s."""
    scope = "ratelimit-5"
    httpx.post(f"{reference_url}/_stats/reset")
    target = create_target(client, auth, f"{reference_url}/m/{scope}/v1", rate_limit={"rps": 4})
    cert = wait_terminal(client, auth, certify(client, auth, target), timeout=120)
    assert cert["status"] == "succeeded" and cert["verdict"] == "certified"
    stats = httpx.get(f"{reference_url}/_stats").json()
    print("reference answered", stats["by_status"])
    assert stats["by_scope"][scope]["total"] == 16  # 5 listings, 1 probe chat, 10 chats
    assert stats["by_status"].get("429", 0) == 0


def finish_on_a_new_worker(client, auth, settings, cert_id: str, log, queue: str) -> dict:  # type: ignore[no-untyped-def]
    """A released job is picked up by another worker on the same queue and run to the end."""
    worker, _ = queue_worker(settings, log, queue)
    try:
        return wait_terminal(client, auth, cert_id, timeout=120)
    finally:
        worker.stop()


@pytest.fixture()
def shutdown_queue(settings) -> str:  # type: ignore[no-untyped-def]
    return settings.region_queues["shutdown"]  # type: ignore[no-any-return]


@pytest.mark.usefixtures("worker")  # consumes the maintenance queue: runs beat's sweeps
def test_sigterm_mid_job_releases_it_and_it_finishes_exactly_once(
    client, auth, reference_url, settings, factory, shutdown_queue, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    first, port = queue_worker(
        settings,
        tmp_path / "first.log",
        shutdown_queue,
        WORKER_SHUTDOWN_GRACE="1",
        CERTIFICATION_CONCURRENCY="1",
    )
    target = regional_target(client, auth, f"{reference_url}/m/slow-2000/v1", "shutdown")
    cert_id = certify(client, auth, target, region="shutdown")
    try:
        wait_running_with_a_checkpoint(client, auth, cert_id)
        first.popen.send_signal(signal.SIGTERM)  # the main process only, as Kubernetes does
        ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5)
        assert ready.status_code == 503 and ready.json()["draining"] is True
        assert first.popen.wait(timeout=60) == 0
        with factory() as session:
            row = session.get(Certification, uuid.UUID(cert_id))
            print("after shutdown:", row.status.value, row.attempt, row.error_cause)
            # Grace (1 s) < the rest of the job (~4 s): released, the attempt not counted.
            assert (row.status.value, row.attempt) == ("retrying", 0)
    finally:
        first.stop()
    cert = finish_on_a_new_worker(
        client, auth, settings, cert_id, tmp_path / "second.log", shutdown_queue
    )
    assert cert["status"] == "succeeded" and cert["attempt"] == 1
    with factory() as session:
        names = session.scalars(
            select(CheckResultRow.check_name).where(
                CheckResultRow.certification_id == uuid.UUID(cert_id)
            )
        ).all()
        assert sorted(names) == ["chat", "connectivity"]  # one row per check, none twice
        assert (
            session.scalar(
                select(func.count())
                .select_from(CheckResultRow)
                .where(CheckResultRow.certification_id == uuid.UUID(cert_id))
            )
            == 2
        )


@pytest.mark.usefixtures("worker")  # consumes the maintenance queue: runs beat's sweeps
def test_second_signal_stops_at_once_and_the_job_is_not_lost(
    client, auth, reference_url, settings, factory, shutdown_queue, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """A long grace (60 s), then a second SIGTERM: the worker releases the job and exits
    without waiting out the grace; another worker finishes it exactly once."""
    first, _ = queue_worker(
        settings,
        tmp_path / "first2.log",
        shutdown_queue,
        WORKER_SHUTDOWN_GRACE="60",
        CERTIFICATION_CONCURRENCY="1",
    )
    target = regional_target(client, auth, f"{reference_url}/m/slow-2000/v1", "shutdown")
    cert_id = certify(client, auth, target, region="shutdown")
    try:
        wait_running_with_a_checkpoint(client, auth, cert_id)
        first.popen.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        first.popen.send_signal(signal.SIGTERM)  # the second signal: stop now
        signalled = time.monotonic()
        first.popen.wait(timeout=50)  # well under the 60 s grace
        print(f"worker exited {time.monotonic() - signalled:.1f}s after the second signal")
        with factory() as session:
            row = session.get(Certification, uuid.UUID(cert_id))
            assert row.status.value == "retrying", row.status  # released, not lost
    finally:
        first.stop()
    cert = finish_on_a_new_worker(
        client, auth, settings, cert_id, tmp_path / "second2.log", shutdown_queue
    )
    assert cert["status"] == "succeeded" and cert["attempt"] == 1


@pytest.mark.usefixtures("worker")  # consumes the maintenance queue: runs beat's sweeps
def test_hard_time_limit_kills_a_child_stuck_past_the_soft_limit(
    client, auth, reference_url, settings, factory, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """A child that cannot finish its soft-limit handling (here: its UPDATE waits on a row lock
    the test holds) is killed at the hard limit; the job is not lost and ends exactly once."""
    queue = settings.region_queues["hardlimit"]
    log = tmp_path / "hardlimit.log"
    proc, _ = queue_worker(
        settings, log, queue, CERTIFICATION_CONCURRENCY="1", CERTIFICATION_TIMEOUT="10"
    )
    target = regional_target(client, auth, f"{reference_url}/m/slow-3000/v1", "hardlimit")
    cert_id = certify(client, auth, target, region="hardlimit", suite="standard")
    try:
        wait_running_with_a_checkpoint(client, auth, cert_id)
        with factory() as session, session.begin():
            session.execute(
                select(Certification.id)
                .where(Certification.id == uuid.UUID(cert_id))
                .with_for_update()
            )
            deadline = time.monotonic() + 90  # soft limit 10 s, hard limit 40 s
            while time.monotonic() < deadline and "Hard time limit" not in log.read_text(
                errors="replace"
            ):
                time.sleep(0.5)
            assert "Hard time limit" in log.read_text(errors="replace")
        cert = wait_terminal(client, auth, cert_id, timeout=180)
    finally:
        proc.stop()
    assert cert["status"] == "timed_out", cert  # the next attempt hit the soft limit again
    with factory() as session:
        names = session.scalars(
            select(CheckResultRow.check_name).where(
                CheckResultRow.certification_id == uuid.UUID(cert_id)
            )
        ).all()
    assert len(names) == len(set(names))
