"""Real Postgres and Redis (from DATABASE_URL / REDIS_URL, else embedded), real processes."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Settings
from app.devtools.harness import (
    BIN,
    Proc,
    free_port,
    fresh_database,
    local_settings,
    postgres_admin_url,
    redis_server_url,
    settings_env,
    wait_http,
)
from tests.support import ROOT
from tests.support.rows import make_token
from tests.support.workers import start_worker

# The tier of each test, from the folder it lives in (`pytest -m unit`, `make test-unit`).
TIERS = {
    "unit": "unit",
    "integration": "integration",
    "security": "integration",
    "e2e": "e2e",
    "reliability": "e2e",
    "deploy": "deploy",
    "bench": "bench",
    "chaos": "e2e",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.path)).relative_to(ROOT / "tests").parts
        tier = TIERS.get(parts[0]) if len(parts) > 1 else None
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def admin_database_url() -> Iterator[str]:
    data = Path(os.environ.get("MODELCERT_TEST_PGDATA", ROOT / ".modelcert" / "test-postgres"))
    url, _server = postgres_admin_url(data)
    yield url


@pytest.fixture(scope="session")
def database_url(admin_database_url: str) -> Iterator[str]:
    """A fresh database per test session."""
    with fresh_database(admin_database_url) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, proc = redis_server_url(tmp_path_factory.mktemp("redis"))
    yield url
    if proc is not None:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def settings(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return local_settings(
        database_url,
        redis_url,
        tmp_path_factory.mktemp("data"),
        "cert-test",
        certification_max_retries=1,
        certification_concurrency=2,
        certification_timeout=60,
        certification_lease_seconds=10,
        sweeper_interval=1,
        worker_shutdown_grace=10,
        worker_health_port=free_port(),
        # Regions with queues of their own, which the session worker does not consume: tests
        # start workers for them, or (idle) leave their jobs waiting.
        certification_region_queues="eu-west-1=eu-west-1,idle=idle,shutdown=shutdown,"
        "hardlimit=hardlimit",
    )


@pytest.fixture(scope="session")
def reference_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = Proc(
        [str(BIN / "modelcert"), "reference-endpoint", "--port", str(port)],
        dict(os.environ),
        tmp_path_factory.mktemp("ref") / "ref.log",
    ).start()
    wait_http(f"http://127.0.0.1:{port}/_health", 30, proc=proc.popen)
    yield f"http://127.0.0.1:{port}"
    proc.stop()


@pytest.fixture(scope="session")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_worker(settings, tmp_path_factory.mktemp("worker") / "worker.log")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def beat(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = Proc(
        [str(BIN / "modelcert"), "beat"],
        settings_env(settings),
        tmp_path_factory.mktemp("beat") / "beat.log",
    ).start()
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


@pytest.fixture()
def auth(factory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Bearer header of a token in a fresh organization."""
    return {"Authorization": f"Bearer {make_token(factory, f'org-{uuid.uuid4().hex[:8]}')}"}
