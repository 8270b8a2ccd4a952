"""What the API's and the worker's probes share: is the broker answering, and the Prometheus
exposition (every process's series with prometheus_client's multiprocess mode, when it is
on)."""

from __future__ import annotations

import os

import redis
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

__all__ = ["CONTENT_TYPE_LATEST", "broker_reachable", "metrics_exposition"]


def broker_reachable(client: redis.Redis) -> bool:
    """Redis answers a PING on the probe's own connection (short timeouts: a hung broker
    must not hang the probe, CELERY-FACTS)."""
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def metrics_exposition() -> bytes:
    """The Prometheus text of this process, or of every process of the tree sharing
    PROMETHEUS_MULTIPROC_DIR (gunicorn workers, Celery pool children)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
