"""Baseline for e2e_throughput and dispatch_latency: a bare Celery no-op task.

The worker settings mirror worker/celery_app.py (JSON, acks late, prefetch 1, ignore results,
events on, the same concurrency and max tasks per child) on the same Redis. The task only
records (sent_at, started_at) with one RPUSH so the harness can see it ran.
Run: `python -m bench.baseline_celery QUEUE` with the bench's environment.
"""

from __future__ import annotations

import json
import sys
import time
from functools import lru_cache

import redis
from celery import Celery

from app.config import Settings, settings_for_process

NOOP = "bench.noop"


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or settings_for_process()
    app = Celery("bench-baseline", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_concurrency=settings.certification_concurrency,
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child,
        worker_max_memory_per_child=settings.worker_max_memory_per_child,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    return app


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(str(settings_for_process().redis_url))


def noop(run: str, sent_at: float = 0.0) -> None:
    _redis().rpush(f"bench-baseline:{run}", json.dumps([sent_at, time.time()]))


def results(client: redis.Redis, run: str) -> list[tuple[float, float]]:
    return [tuple(json.loads(x)) for x in client.lrange(f"bench-baseline:{run}", 0, -1)]


if __name__ == "__main__":
    app = make_app()
    app.task(name=NOOP, ignore_result=True)(noop)
    app.worker_main(
        [
            "worker",
            "--loglevel",
            "WARNING",
            "-Q",
            sys.argv[1],
            "-n",
            f"bench-baseline-{time.time_ns()}@localhost",
            "--without-gossip",
            "--without-mingle",
            "-E",
        ]
    )
