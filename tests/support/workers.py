"""Worker processes a test starts: the session's own, or extra ones on queues of their own."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from app.config import Settings
from app.devtools.harness import BIN, Proc, free_port, settings_env, wait_http


def queue_worker(settings, log: Path, queues: str | None = None, **env: str) -> tuple[Proc, int]:  # type: ignore[no-untyped-def]
    """A worker with its own probe port. The machine is shared: a port from free_port() can be
    taken before the worker binds it, so insist that /live answers with *this* worker's pid."""
    argv = [str(BIN / "modelcert"), "worker"] + (["--queues", queues] if queues else [])
    for _ in range(3):
        port = free_port()
        proc = Proc(argv, settings_env(settings, WORKER_HEALTH_PORT=str(port), **env), log).start()
        if wait_own_probe(proc, port):
            wait_http(f"http://127.0.0.1:{port}/ready", 90, proc=proc.popen)
            return proc, port
        proc.stop()
    raise RuntimeError(f"the worker never served its probes; see {log}")


def wait_own_probe(proc: Proc, port: int, timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.popen.poll() is None:  # type: ignore[union-attr]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/live", timeout=2).json().get("pid") == proc.pid:
                return True
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    return False


def node_name(proc: Proc) -> str:
    return f"modelcert-{proc.pid}@{socket.gethostname()}"


def start_worker(settings: Settings, log: Path, **extra: str) -> Proc:
    port = extra.pop("WORKER_HEALTH_PORT", None) or str(settings.worker_health_port)
    proc = Proc(
        [str(BIN / "modelcert"), "worker"],
        settings_env(settings, WORKER_HEALTH_PORT=port, **extra),
        log,
    ).start()
    wait_http(f"http://127.0.0.1:{port}/ready", 90, proc=proc.popen)
    return proc
