"""Only the worker holds the private signing key (issue #22). In production every other
process (api, beat, flower, migrate) starts without MODELCERT_SIGNING_KEY, and the API
publishes the public keys the workers registered; the worker refuses to start without it.
Real processes."""

from __future__ import annotations

import base64
import subprocess
import time
import uuid

import httpx

from app.certification import certificates as certs
from app.db.session import transaction
from app.devtools.harness import BIN, Proc, free_port, settings_env, wait_http
from app.services.signing import register_keys, signer_from
from tests.support.cli import config_error

FLOWER_AUTH = ("operator", f"pw-{uuid.uuid4().hex[:12]}")


def production_env(settings, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = settings_env(settings, MODELCERT_ENV="production", **extra)
    env.pop("MODELCERT_SIGNING_KEY", None)
    env.update(extra)
    return env


def wait_output(proc: Proc, text: str, timeout: float = 60) -> bool:
    """Until `text` is in the process's log, or it exits."""
    deadline = time.monotonic() + timeout
    while (
        time.monotonic() < deadline
        and text not in proc.output()
        and proc.popen is not None
        and proc.popen.poll() is None
    ):
        time.sleep(0.2)
    return text in proc.output()


def test_non_signing_processes_start_without_the_private_key(settings, factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A key a worker registered (as its warm-up does before it signs).
    signer = signer_from((certs.generate_seed(),))
    with transaction(factory) as session:
        register_keys(session, signer)

    migrate = subprocess.run(
        [str(BIN / "modelcert"), "migrate"],
        env=production_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr

    api_port, flower_port = free_port(), free_port()
    api = Proc(
        [str(BIN / "modelcert"), "api"],
        production_env(settings, API_PORT=str(api_port), API_WORKERS="1"),
        tmp_path / "api.log",
    ).start()
    flower = Proc(
        [str(BIN / "modelcert"), "flower"],
        production_env(
            settings, FLOWER_PORT=str(flower_port), FLOWER_BASIC_AUTH=":".join(FLOWER_AUTH)
        ),
        tmp_path / "flower.log",
    ).start()
    beat = Proc(
        [str(BIN / "modelcert"), "beat"], production_env(settings), tmp_path / "beat.log"
    ).start()
    try:
        wait_http(f"http://127.0.0.1:{api_port}/ready", 60, proc=api.popen)
        keys = httpx.get(f"http://127.0.0.1:{api_port}/v1/signing-keys", timeout=10).json()
        assert signer.public_keys[0] in {k["public_key"] for k in keys["keys"]}
        wait_http(f"http://127.0.0.1:{flower_port}/healthcheck", 60, proc=flower.popen)
        wait_http(f"http://127.0.0.1:{flower_port}/api/workers", 60, status=401, proc=flower.popen)
        assert wait_output(beat, "beat: Starting"), beat.output()
        assert beat.popen.poll() is None
        for proc in (api, flower, beat):
            assert "MODELCERT_SIGNING_KEY" not in proc.output()
    finally:
        for proc in (api, flower, beat):
            proc.stop()


def test_the_worker_alone_refuses_to_start_without_it(settings) -> None:  # type: ignore[no-untyped-def]
    line = config_error(["worker"], production_env(settings), installed=True)
    assert line.startswith("config error: MODELCERT_SIGNING_KEY is not set")


def test_a_non_signing_process_given_the_key_says_it_does_not_need_it(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    seed = base64.b64encode(b"k" * 32).decode()
    beat = Proc(
        [str(BIN / "modelcert"), "beat"],
        production_env(settings, MODELCERT_SIGNING_KEY=seed),
        tmp_path / "beat.log",
    )
    beat.start()
    try:
        assert wait_output(beat, "signing_key_not_needed"), beat.output()
        assert seed not in beat.output()
    finally:
        beat.stop()


def test_a_maintenance_worker_starts_without_it(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Sweeps, re-certification and webhooks sign nothing: a worker on the maintenance queue
    alone runs in production without the key (deploy/k8s/base/maintenance.yaml)."""
    port = free_port()
    worker = Proc(
        [str(BIN / "modelcert"), "worker", "--queues", settings.maintenance_queue_name],
        production_env(settings, WORKER_HEALTH_PORT=str(port)),
        tmp_path / "maintenance.log",
    ).start()
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", 90, proc=worker.popen)
        assert "worker_warm_up_failed" not in worker.output()
    finally:
        worker.stop()


def test_migrate_needs_no_broker(settings) -> None:  # type: ignore[no-untyped-def]
    env = production_env(settings)
    env.pop("REDIS_URL", None)
    migrate = subprocess.run(
        [str(BIN / "modelcert"), "migrate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stderr
