"""Probes against a private Redis (stopped, hung, back), and Flower behind basic auth."""

from __future__ import annotations

import os
import signal
import time
import uuid

import httpx
import pytest

from app.devtools.harness import BIN, Proc, free_port, settings_env, start_redis_server, wait_http
from tests.support.api import certify, create_target, wait_terminal
from tests.support.cli import config_error
from tests.support.workers import queue_worker


def wait_status(url: str, status: int, timeout: float) -> float:
    """Seconds until `url` answers `status` (asserting /live stays 200 meanwhile)."""
    started = time.monotonic()
    live = url.rsplit("/", 1)[0] + "/live"
    while time.monotonic() - started < timeout:
        assert httpx.get(live, timeout=5).status_code == 200
        try:
            if httpx.get(url, timeout=5).status_code == status:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer {status} within {timeout}s")


def test_ready_follows_a_stopped_and_a_hung_redis_while_live_stays_200(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    redis_port = free_port()
    redis_proc = start_redis_server(redis_port, tmp_path / "redis")
    worker, port = queue_worker(
        settings, tmp_path / "worker.log", REDIS_URL=f"redis://127.0.0.1:{redis_port}/0"
    )
    ready = f"http://127.0.0.1:{port}/ready"
    try:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        took = wait_status(ready, 503, 30)
        print(f"/ready 503 {took:.1f}s after Redis stopped (target: within 10 s)")
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
        assert health["broker"] == "unreachable" and health["database"] == "connected"
        redis_proc = start_redis_server(redis_port, tmp_path / "redis")
        took = wait_status(ready, 200, 90)
        print(f"/ready 200 {took:.1f}s after Redis returned")

        os.kill(redis_proc.pid, signal.SIGSTOP)  # hung: TCP open, no answers
        try:
            took = wait_status(ready, 503, 30)
            print(f"/ready 503 {took:.1f}s after Redis hung")
        finally:
            os.kill(redis_proc.pid, signal.SIGCONT)
        took = wait_status(ready, 200, 90)
        print(f"/ready 200 {took:.1f}s after Redis resumed")
        assert worker.popen.poll() is None
    finally:
        worker.stop()
        redis_proc.terminate()
        redis_proc.wait(timeout=10)


def test_flower_refuses_to_run_open(settings) -> None:  # type: ignore[no-untyped-def]
    env = settings_env(settings, FLOWER_PORT=str(free_port()))
    env.pop("FLOWER_BASIC_AUTH", None)
    assert "FLOWER_BASIC_AUTH" in config_error(["flower"], env, installed=True)


@pytest.mark.usefixtures("worker")
def test_flower_needs_credentials_and_shows_only_the_certification_id(
    settings, worker, client, auth, reference_url, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    password = uuid.uuid4().hex
    flower = Proc(
        [str(BIN / "modelcert"), "flower"],
        settings_env(settings, FLOWER_PORT=str(port), FLOWER_BASIC_AUTH=f"ops:{password}"),
        tmp_path / "flower.log",
    ).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthcheck", 60, proc=flower.popen)
        assert httpx.get(f"{base}/api/workers").status_code == 401
        assert httpx.get(f"{base}/api/workers", auth=("ops", "wrong")).status_code == 401
        assert password not in flower.output()
        name = f"modelcert-{worker.pid}@"
        deadline = time.monotonic() + 60
        workers: dict = {}  # type: ignore[type-arg]
        while time.monotonic() < deadline:
            r = httpx.get(f"{base}/api/workers?refresh=1", auth=("ops", password), timeout=30)
            assert r.status_code == 200
            workers = r.json()
            if any(key.startswith(name) for key in workers):
                break
            time.sleep(1)
        assert any(key.startswith(name) for key in workers), list(workers)
        # Its broker view (queue lengths) reads a redis:// URL, not our transport's name.
        r = httpx.get(f"{base}/api/queues/length", auth=("ops", password), timeout=30)
        assert r.status_code == 200, r.text
        assert "active_queues" in r.json()

        target = create_target(client, auth, f"{reference_url}/v1")
        cert_id = certify(client, auth, target)
        assert wait_terminal(client, auth, cert_id)["status"] == "succeeded"
        deadline = time.monotonic() + 30
        mine: list = []  # type: ignore[type-arg]
        while time.monotonic() < deadline and not mine:
            tasks = httpx.get(f"{base}/api/tasks", auth=("ops", password), timeout=10).json()
            mine = [t for t in tasks.values() if cert_id in str(t.get("args"))]
            time.sleep(0.5)
        assert mine, "Flower saw the task"
        for task in mine:
            assert task["name"] == "modelcert.run_certification"
            assert task["args"] in (f"['{cert_id}']", f"('{cert_id}',)")
            assert task["kwargs"] in ("{}", None)
            assert "http" not in str(task.get("args"))
    finally:
        flower.stop()
