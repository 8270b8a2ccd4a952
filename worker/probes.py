"""/live /ready /health /metrics on WORKER_HEALTH_PORT, served from the worker's main process.

A bootstep that requires the Pool starts after the first children fork and before the broker
connects (CELERY-FACTS), so the server answers while the broker is still down.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import redis
from celery import Celery, bootsteps, signals
from prometheus_client import CollectorRegistry, multiprocess
from sqlalchemy import text

from app.config import Settings
from app.db import jobs
from app.db.session import make_engine
from app.probes import CONTENT_TYPE_LATEST, broker_reachable, metrics_exposition

log = logging.getLogger(__name__)
VERSION = "0.1.0"


def container_memory_limit(cgroup: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The memory limit of this process's cgroup (v2, else v1); None when there is none."""
    for name in ("memory.max", "memory/memory.limit_in_bytes"):
        try:
            text = (cgroup / name).read_text().strip()
        except OSError:
            continue
        if not text.isdigit():
            return None  # "max": no limit
        limit = int(text)
        return limit if limit < 1 << 62 else None  # v1 says "unlimited" with about 2^63
    return None


class WorkerState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started = time.time()
        self.draining = False
        self.worker: Any = None
        self.server: ThreadingHTTPServer | None = None
        self.engine = make_engine(
            str(settings.database_url), pool_size=1, application_name="modelcert-worker-probe"
        )
        self.redis = redis.Redis.from_url(
            str(settings.redis_url), socket_connect_timeout=1, socket_timeout=1
        )
        self._cache: tuple[float, dict[str, Any]] | None = None
        self._lock = threading.Lock()
        limit = container_memory_limit()
        if limit is not None:
            from worker import metrics

            metrics.WORKER_MEMORY_LIMIT.set(limit)

    def broker_ok(self) -> bool:
        return broker_reachable(self.redis)

    def database_ok(self) -> bool:
        """SELECT 1, and the age of the oldest job not yet started (for the queue-delay alert)."""
        from worker import metrics

        try:
            with self.engine.connect() as conn:
                conn.execute(text("SET statement_timeout = 2000"))
                age = jobs.oldest_waiting_seconds(conn)
            metrics.OLDEST_QUEUED_AGE.set(age)
            return True
        except Exception:  # noqa: BLE001
            return False

    def consumer_connected(self) -> bool:
        consumer = getattr(self.worker, "consumer", None)
        return consumer is not None and getattr(consumer, "connection", None) is not None

    def snapshot(self) -> dict[str, Any]:
        """Readiness facts, cached for a second so probes never pile up."""
        with self._lock:
            if self._cache and time.monotonic() - self._cache[0] < 1.0:
                return self._cache[1]
            from worker import metrics
            from worker.tasks import queue_depth

            broker = self.broker_ok()
            database = self.database_ok()
            depths: dict[str, int] = {}
            if broker:
                # Every configured queue, not only those consumed here: a worker that runs only
                # maintenance still shows the certification queues waiting for a scaled-to-zero
                # fleet, and the alerts compare depth with the ready consumers of each queue.
                for queue in self.configured_queues():
                    try:
                        depths[queue] = queue_depth(self.redis, queue)
                        metrics.QUEUE_DEPTH.labels(queue).set(depths[queue])
                    except redis.RedisError:
                        pass
            ready = broker and database and self.consumer_connected() and not self.draining
            metrics.WORKER_READY.set(1 if ready else 0)
            for queue in self.queues():
                metrics.WORKER_QUEUE_READY.labels(queue).set(1 if ready else 0)
            metrics.WORKER_RSS.set(self.rss())
            facts = {
                "broker": broker,
                "database": database,
                "consumer_connected": self.consumer_connected(),
                "draining": self.draining,
                "ready": ready,
                "queue_depth": depths,
            }
            self._cache = (time.monotonic(), facts)
            return facts

    def queues(self) -> list[str]:
        """The queues this worker consumes (`--queues`), known before the broker connects."""
        app = getattr(self.worker, "app", None)
        selected = app.amqp.queues.consume_from if app is not None else {}
        return list(selected) or [self.settings.certification_queue_name]

    def configured_queues(self) -> list[str]:
        """Every queue of this deployment: the job queues and the maintenance queue."""
        names = [*self.settings.job_queues, self.settings.maintenance_queue_name, *self.queues()]
        return list(dict.fromkeys(names))

    def rss(self) -> int:
        try:
            me = psutil.Process()
            return me.memory_info().rss + sum(
                c.memory_info().rss for c in me.children(recursive=True)
            )
        except psutil.Error:
            return 0

    def counts(self) -> dict[str, int]:
        """Certifications this worker ended, by status (summed over its pool children)."""
        totals = {"succeeded": 0, "failed": 0, "timed_out": 0, "cancelled": 0}
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return totals
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        for family in registry.collect():
            if family.name != "modelcert_certifications":
                continue
            for sample in family.samples:
                status = sample.labels.get("status", "")
                if sample.name.endswith("_total") and status in totals:
                    totals[status] += int(sample.value)
        return totals

    def health(self) -> dict[str, Any]:
        facts = self.snapshot()
        pool = getattr(self.worker, "pool", None)
        info = pool.info if pool is not None and hasattr(pool, "info") else {}
        processes = list(info.get("processes") or []) if isinstance(info, dict) else []
        from celery.worker import state as worker_state

        return {
            "status": "ok" if facts["ready"] else "degraded",
            "version": VERSION,
            "uptime_seconds": round(time.time() - self.started, 1),
            "hostname": getattr(self.worker, "hostname", None),
            "pool_size": len(processes) or self.settings.certification_concurrency,
            "active_jobs": len(worker_state.active_requests),
            "processed": worker_state.total_count.get("modelcert.run_certification", 0),
            "counts": self.counts(),
            "broker": "connected" if facts["broker"] else "unreachable",
            "database": "connected" if facts["database"] else "unreachable",
            "consumer_connected": facts["consumer_connected"],
            "draining": facts["draining"],
            "queues": self.queues(),
            "queue_depth": facts["queue_depth"],
        }


STATE: WorkerState | None = None


class Handler(BaseHTTPRequestHandler):
    server_version = "modelcert-worker"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        state = STATE
        path = self.path.split("?")[0]
        if state is None:
            self._send(503, b'{"status": "starting"}')
        elif path == "/live":
            self._send(200, json.dumps({"status": "alive", "pid": os.getpid()}).encode())
        elif path == "/ready":
            facts = state.snapshot()
            self._send(200 if facts["ready"] else 503, json.dumps(facts).encode())
        elif path == "/health":
            health = state.health()
            self._send(200 if health["status"] == "ok" else 503, json.dumps(health).encode())
        elif path == "/metrics":
            state.snapshot()
            self._send(200, metrics_exposition(), CONTENT_TYPE_LATEST)
        else:
            self._send(404, b'{"status": "not found"}')


def probe_server(host: str, port: int) -> ThreadingHTTPServer:
    """The probes' HTTP server on MODELCERT_LISTEN_HOST (loopback unless configured)."""

    class ProbeHTTPServer(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    return ProbeHTTPServer((host, port), Handler)


class ProbeServer(bootsteps.StartStopStep):
    requires = ("celery.worker.components:Pool",)
    # Set by install(); never kept in app.conf, which Flower shows (CELERY-FACTS).
    settings: Settings | None = None

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)

    def start(self, worker: Any) -> None:
        global STATE
        settings = self.settings
        assert settings is not None, "probes.install(app, settings) first"
        state = WorkerState(settings)
        state.worker = worker
        server = probe_server(settings.modelcert_listen_host, settings.worker_health_port)
        server.daemon_threads = True
        state.server = server
        STATE = state
        threading.Thread(target=server.serve_forever, name="probe-server", daemon=True).start()
        log.info("probe_server_started", extra={"port": settings.worker_health_port})

    def stop(self, worker: Any) -> None:
        if STATE is not None and STATE.server is not None:
            STATE.server.shutdown()
            STATE.server.server_close()


def install(app: Celery, settings: Settings) -> None:
    ProbeServer.settings = settings
    app.steps["worker"].add(ProbeServer)

    @signals.worker_process_init.connect(weak=False)
    def close_inherited_socket(**_: Any) -> None:
        if STATE is not None and STATE.server is not None:
            try:
                STATE.server.socket.close()
            except OSError:
                pass
        from worker import metrics

        metrics.WORKER_RESTARTS.inc()

    @signals.worker_process_shutdown.connect(weak=False)
    def mark_dead(pid: int | None = None, **_: Any) -> None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.mark_process_dead(pid or os.getpid())

    received = {"signals": 0}

    @signals.worker_shutting_down.connect(weak=False)
    def drain(**_: Any) -> None:
        from worker.celery_factory import STOP_JOBS

        if STATE is not None:
            STATE.draining = True
            STATE._cache = None
        received["signals"] += 1
        if received["signals"] > 1:
            # A second SIGTERM/SIGINT: stop now. Running jobs stop at the next sample boundary
            # and are released (back to the queue, resumed from checkpoints), never lost.
            STOP_JOBS.value = 1
            log.info("second_signal_stopping_now")
            return
        grace = settings.worker_shutdown_grace
        log.info("worker_draining", extra={"grace_seconds": grace})

        def stop_jobs() -> None:
            STOP_JOBS.value = 1
            log.info("shutdown_grace_over_releasing_jobs")

        timer = threading.Timer(grace, stop_jobs)
        timer.daemon = True
        timer.start()
