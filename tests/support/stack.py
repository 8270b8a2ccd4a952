"""A private stack for chaos and outage tests: own redis-server, own Postgres, own processes."""

from __future__ import annotations

import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from app.config import Settings
from app.devtools.harness import (
    BIN,
    Proc,
    free_port,
    local_settings,
    settings_env,
    start_embedded_postgres,
    start_redis_server,
    wait_http,
)


class PrivatePostgres:
    """pgserver in a temporary directory; restartable."""

    def __init__(self, root: Path) -> None:
        self.url, self.server = start_embedded_postgres()

    def restart(self) -> None:
        """Fast shutdown (SIGINT to the postmaster, as pg_ctl -m fast does), then start again."""
        pid = int((self.server.pgdata / "postmaster.pid").read_text().split()[0])
        postmaster = psutil.Process(pid)
        postmaster.send_signal(signal.SIGINT)
        postmaster.wait(timeout=60)
        time.sleep(1.0)
        self.server.ensure_postgres_running()

    def stop(self) -> None:
        self.server.cleanup()


class PrivateRedis:
    def __init__(self, root: Path) -> None:
        self.root = root / "redis"
        self.port = free_port()
        self.proc = start_redis_server(self.port, self.root)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def restart(self) -> None:
        self.stop()
        self.proc = start_redis_server(self.port, self.root)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@dataclass
class Stack:
    root: Path
    settings: Settings
    workers: list[Proc] = field(default_factory=list)
    beat: Proc | None = None
    kills: int = 0
    restarts: int = 0

    @classmethod
    def create(cls, root: Path, database_url: str, redis_url: str, **overrides: object) -> Stack:
        values: dict[str, object] = dict(
            certification_concurrency=2,
            certification_max_retries=5,
            certification_timeout=60,
            certification_lease_seconds=5,
            sweeper_interval=1,
            worker_shutdown_grace=5,
            api_rate_limit="1000000/minute",
        )
        return cls(
            root,
            local_settings(database_url, redis_url, root / "data", "chaos", **(values | overrides)),
        )

    def start_worker(self) -> Proc:
        port = free_port()
        log = self.root / f"worker-{len(self.workers)}.log"
        proc = Proc(
            [str(BIN / "modelcert"), "worker"],
            settings_env(self.settings, WORKER_HEALTH_PORT=str(port)),
            log,
        ).start()
        proc.health_port = port  # type: ignore[attr-defined]
        self.workers.append(proc)
        return proc

    def wait_ready(self, proc: Proc, timeout: float = 90) -> None:
        wait_http(
            f"http://127.0.0.1:{proc.health_port}/ready",
            timeout,  # type: ignore[attr-defined]
            proc=proc.popen,
        )

    def start_beat(self) -> None:
        self.beat = Proc(
            [str(BIN / "modelcert"), "beat"], settings_env(self.settings), self.root / "beat.log"
        ).start()

    def live_workers(self) -> list[Proc]:
        return [w for w in self.workers if w.popen and w.popen.poll() is None]

    def kill_random_worker(self, rng: random.Random) -> None:
        """SIGKILL a worker's main process and its children (the whole group)."""
        live = self.live_workers()
        if live:
            rng.choice(live).kill_group()
            self.kills += 1

    def supervise(self, want: int) -> None:
        """Like Kubernetes: replace workers that died or exited."""
        while len(self.live_workers()) < want:
            self.start_worker()
            self.restarts += 1

    def kill_children_of(self, proc: Proc) -> int:
        """SIGKILL the pool children of one worker (what a poison job does to its child)."""
        killed = 0
        try:
            for child in psutil.Process(proc.pid).children():
                child.send_signal(signal.SIGKILL)
                killed += 1
        except psutil.Error:
            pass
        return killed

    def stop(self) -> None:
        for proc in self.workers:
            proc.stop(timeout=15)
        if self.beat is not None:
            self.beat.stop(timeout=15)
