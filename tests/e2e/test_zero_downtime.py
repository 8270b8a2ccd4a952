"""Zero-downtime restarts: steady API traffic while gunicorn is HUPed twice and a worker is
SIGTERMed; no request fails and no job is lost."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from app.devtools.harness import BIN, Proc, free_port, settings_env, wait_http
from tests.support.workers import start_worker

pytestmark = pytest.mark.slow


def test_hup_twice_and_sigterm_a_worker(settings, auth, reference_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    env = settings_env(settings, API_WORKERS="2", API_THREADS="2", API_RATE_LIMIT="100000/minute")
    api = Proc(
        [str(BIN / "modelcert"), "api", "--bind", f"127.0.0.1:{port}"], env, tmp_path / "api.log"
    ).start()
    worker_a = start_worker(
        settings, tmp_path / "worker-a.log", WORKER_HEALTH_PORT=str(free_port())
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", 60, proc=api.popen)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, headers=auth, timeout=30) as c:
            target = c.post(
                "/v1/targets",
                json={
                    "name": "zero-downtime",
                    "model": "reference-model",
                    "base_url": f"{reference_url}/m/slow-20/v1",
                },
            )
            assert target.status_code == 201, target.text
            target_id = target.json()["id"]

        failures: list[str] = []
        created: list[str] = []
        stop = threading.Event()

        def traffic() -> None:
            with httpx.Client(base_url=base, headers=auth, timeout=30) as c:
                while not stop.is_set():
                    try:
                        r = c.post("/v1/certifications", json={"target_id": target_id})
                        if r.status_code != 202:
                            failures.append(f"POST {r.status_code} {r.text[:200]}")
                        else:
                            created.append(r.json()["id"])
                            g = c.get(f"/v1/certifications/{created[-1]}")
                            if g.status_code != 200:
                                failures.append(f"GET {g.status_code}")
                    except httpx.HTTPError as exc:
                        failures.append(f"{type(exc).__name__}: {exc}")
                    time.sleep(0.02)

        threads = [threading.Thread(target=traffic) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(2)
        api.popen.send_signal(signal.SIGHUP)  # graceful reload: new workers, old ones finish
        time.sleep(3)
        api.popen.send_signal(signal.SIGHUP)
        time.sleep(2)
        worker_a.stop(signal.SIGTERM, timeout=60)  # warm shutdown of the main process only
        worker_b = start_worker(
            settings, tmp_path / "worker-b.log", WORKER_HEALTH_PORT=str(free_port())
        )
        time.sleep(3)
        stop.set()
        for t in threads:
            t.join()
        assert not failures, failures[:5]
        assert len(created) > 20

        deadline = time.monotonic() + 180
        pending = set(created)
        with httpx.Client(base_url=base, headers=auth, timeout=30) as c:
            while pending and time.monotonic() < deadline:
                for cert_id in list(pending):
                    body = c.get(f"/v1/certifications/{cert_id}").json()
                    if body["status"] in ("succeeded", "failed", "timed_out", "cancelled"):
                        assert body["status"] == "succeeded", body
                        pending.discard(cert_id)
                time.sleep(0.5)
        assert not pending, f"{len(pending)} of {len(created)} jobs never finished"
        print(f"{len(created)} jobs created through 2 HUPs and a worker SIGTERM; all succeeded")
        worker_b.stop()
    finally:
        worker_a.stop()
        api.stop()
