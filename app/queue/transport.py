"""kombu's Redis transport with one client object per channel instead of one per command.

kombu 5.7's Redis channel builds a new `redis.Redis` object over its connection pool for every
publish, ack and queue operation (`Channel.conn_or_acquire` -> `_create_client`). Building
one costs about 45 µs here (redis-py fills a response-callback table of ~200 entries), and a
worker's main process does it for every task event batch and every ack: a fifth of that
process's CPU in bench e2e_throughput. A redis-py client holds no connection of its own (each
command borrows one from the pool) and is safe to share between threads, so the channel
keeps one per pool. When kombu replaces its pool (after a connection error), the client is
built again over the new one: the failure handling is kombu's, unchanged.

Selected with Celery's `broker_transport` setting (`TRANSPORT`); the URL is still parsed as a
`redis://` or `rediss://` URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis

TRANSPORT = "app.queue.transport:Transport"


class Channel(kombu_redis.Channel):
    _shared: tuple[Any, Any] | None = None  # (pool, client over that pool)
    # kombu's own, which its stubs (celery-types) leave out with the rest of its private API.
    _create_client: Callable[[], Any]

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool, shared = self.pool, self._shared
        if shared is None or shared[0] is not pool:
            shared = self._shared = (pool, self._create_client())
        yield shared[1]


class Transport(kombu_redis.Transport):
    Channel = Channel
