"""Redis goes away while a job runs: Celery may exit the worker (CELERY-FACTS); its supervisor
(here the test, in production Kubernetes or `make run`) restarts it and the job still ends
exactly once, from its checkpoints (the lease and the sweeper). Marker `chaos`."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import func, select

from app.api.factory import build_app
from app.db.models import Certification, CheckResultRow
from app.devtools.harness import BIN, Proc, free_port, settings_env, start_redis_server
from tests.support.api import certify, create_target, wait_running_with_a_checkpoint, wait_terminal
from tests.support.workers import queue_worker

pytestmark = pytest.mark.chaos


def test_worker_lost_in_a_redis_outage_is_restarted_and_the_job_is_not_lost(
    settings, factory, auth, reference_url, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    redis_port = free_port()
    redis_proc = start_redis_server(redis_port, tmp_path / "redis")
    private_url = f"redis://127.0.0.1:{redis_port}/0"
    # The standard suite against a 1 s endpoint takes longer than the suite-wide 60 s limit the
    # other tests run with: this test is about the outage, not the time limit.
    private = settings.model_copy(update={"redis_url": private_url, "certification_timeout": 300})
    client = build_app(private).test_client()
    env = {
        "REDIS_URL": private_url,
        "MODELCERT_DATA_DIR": str(tmp_path),
        "CERTIFICATION_TIMEOUT": "300",
    }
    beat = Proc(
        [str(BIN / "modelcert"), "beat"], settings_env(settings, **env), tmp_path / "beat.log"
    ).start()
    worker, _ = queue_worker(settings, tmp_path / "worker-1.log", **env)
    restarts = 0
    try:
        target = create_target(client, auth, f"{reference_url}/m/slow-1000/v1")
        cert_id = certify(client, auth, target, suite="standard")
        wait_running_with_a_checkpoint(client, auth, cert_id)
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        time.sleep(5)
        redis_proc = start_redis_server(redis_port, tmp_path / "redis")
        deadline = time.monotonic() + 360
        while time.monotonic() < deadline:
            if worker.popen.poll() is not None:  # the supervisor's job: restart with backoff
                print(f"worker exited with {worker.popen.returncode}; restarting")
                restarts += 1
                worker, _ = queue_worker(settings, tmp_path / f"worker-{restarts + 1}.log", **env)
            body = client.get(f"/v1/certifications/{cert_id}", headers=auth).get_json()
            if body["status"] in ("succeeded", "failed", "timed_out", "cancelled"):
                break
            time.sleep(0.5)
        cert = wait_terminal(client, auth, cert_id, timeout=5)
        # CELERY-FACTS: the worker may exit 1 after finishing the task; if so, restart it, and
        # the unacked message it comes back to (redelivered) must be a no-op.
        try:
            code = worker.popen.wait(timeout=20)
        except Exception:  # noqa: BLE001 - still running: nothing to restart
            code = None
        if code is not None:
            print(f"worker exited with {code} after the job; restarting")
            restarts += 1
            worker, _ = queue_worker(settings, tmp_path / f"worker-{restarts + 1}.log", **env)
            time.sleep(5)
            again = client.get(f"/v1/certifications/{cert_id}", headers=auth).get_json()
            assert (again["status"], again["attempt"]) == (cert["status"], cert["attempt"])
        print(f"ended {cert['status']} after attempt {cert['attempt']}, {restarts} restart(s)")
        assert cert["status"] == "succeeded"
        with factory() as session:
            names = session.scalars(
                select(CheckResultRow.check_name).where(
                    CheckResultRow.certification_id == uuid.UUID(cert_id)
                )
            ).all()
            assert len(names) == len(set(names))
            row = session.get(Certification, uuid.UUID(cert_id))
            assert row.attempt <= row.max_attempts
            assert session.scalar(
                select(func.count())
                .select_from(CheckResultRow)
                .where(CheckResultRow.certification_id == row.id)
            ) == len(set(names))
    finally:
        worker.stop()
        beat.stop()
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
