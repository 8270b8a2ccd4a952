"""app/queue/transport.py: kombu's Redis transport, one client object per channel and pool."""

from __future__ import annotations

import json
import os
import threading
import uuid

import redis

from app.devtools.harness import free_port, start_redis_server
from app.queue import transport as broker
from app.queue.names import priority_lists
from app.queue.publisher import Publisher, make_publisher_app


def _waiting(client: redis.Redis, queue: str) -> int:
    return sum(client.llen(name) for name in priority_lists(queue))


def _drop(client: redis.Redis, queue: str) -> None:
    client.delete(*priority_lists(queue))


def _own_queue(settings, name: str):  # type: ignore[no-untyped-def]
    """Settings whose certification queue no worker consumes (a publisher sends only to the
    deployment's configured queues), and that queue."""
    private = settings.model_copy(
        update={"certification_queue_name": f"broker-{name}-{uuid.uuid4().hex[:8]}"}
    )
    return private, private.certification_queue_name


def test_the_publisher_and_the_worker_use_it(settings) -> None:  # type: ignore[no-untyped-def]
    from worker import malformed
    from worker.celery_factory import make_celery

    # The worker's is a subclass that also moves undecodable messages aside.
    for app, name in (
        (make_publisher_app(settings), broker.TRANSPORT),
        (make_celery(settings), malformed.TRANSPORT),
    ):
        assert app.conf.broker_transport == name
        with app.connection_for_write() as conn:
            assert isinstance(conn.transport, broker.Transport)
            assert conn.transport.driver_type == "redis"  # what Celery's checks look at


def test_one_client_per_pool_and_a_new_one_over_a_new_pool(settings) -> None:  # type: ignore[no-untyped-def]
    with make_publisher_app(settings).connection_for_write() as conn:
        channel = conn.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
            assert first.connection_pool is channel.pool
        given = redis.Redis.from_url(str(settings.redis_url))
        with channel.conn_or_acquire(given) as passed:
            assert passed is given  # a caller's own client is used as kombu does
        channel._disconnect_pools()  # what kombu does after a connection error
        with channel.conn_or_acquire() as third:
            assert third is not first
            assert third.connection_pool is channel.pool
            assert third.ping()


def test_publishes_from_many_threads_all_arrive(settings) -> None:  # type: ignore[no-untyped-def]
    private, queue = _own_queue(settings, "threads")
    publisher = Publisher(private)
    sent: list[bool] = []

    def publish_some() -> None:
        sent.extend(publisher.publish_run(uuid.uuid4(), queue, "normal") for _ in range(50))

    threads = [threading.Thread(target=publish_some) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    client = redis.Redis.from_url(str(settings.redis_url))
    try:
        assert sent.count(True) == 400
        assert _waiting(client, queue) == 400
    finally:
        _drop(client, queue)


def test_publishing_goes_on_after_redis_restarts(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    proc = start_redis_server(port, tmp_path / "redis")
    private, queue = _own_queue(
        settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"}), "restart"
    )
    publisher = Publisher(private)
    try:
        assert publisher.publish_run(uuid.uuid4(), queue, "normal")
        proc.terminate()
        proc.wait(timeout=10)
        assert not publisher.publish_run(uuid.uuid4(), queue, "normal")  # down: False, no raise
        proc = start_redis_server(port, tmp_path / "redis")
        outcomes = [publisher.publish_run(uuid.uuid4(), queue, "normal") for _ in range(3)]
        assert all(outcomes), outcomes  # as kombu's own transport: the pool reconnects
        assert _waiting(redis.Redis(port=port), queue) == outcomes.count(True)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _messages(client: redis.Redis, queue: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(raw) for name in priority_lists(queue) for raw in client.lrange(name, 0, -1)]


def test_a_publish_is_celerys_own_message_without_a_declaration(settings) -> None:  # type: ignore[no-untyped-def]
    from app.queue.names import RUN_CERTIFICATION

    private, queue = _own_queue(settings, "same")
    client = redis.Redis.from_url(str(settings.redis_url))
    publisher = Publisher(private)
    job = uuid.uuid4()
    try:
        assert publisher.publish_run(job, queue, "normal")
        assert not client.exists(f"_kombu.binding.{queue}")  # nothing declared, bound
        publisher.app.send_task(
            RUN_CERTIFICATION, args=[str(job)], queue=queue, priority=3, retry=False
        )  # Celery's defaults: declares the queue
        ours, celerys = _messages(client, queue)
        assert ours["body"] == celerys["body"]
        different = {
            k
            for k in ours["headers"].keys() | celerys["headers"].keys()
            if ours["headers"].get(k) != celerys["headers"].get(k)
        }
        assert different == {"id", "root_id"}  # argsrepr and kwargsrepr as Celery writes them
        assert ours["headers"]["argsrepr"] == f"['{job}']"
        assert ours["properties"]["priority"] == celerys["properties"]["priority"]
        assert ours["properties"]["delivery_info"] == celerys["properties"]["delivery_info"]
    finally:
        _drop(client, queue)
        client.delete(f"_kombu.binding.{queue}")


def test_each_thread_keeps_a_producer_and_a_fork_opens_its_own(settings) -> None:  # type: ignore[no-untyped-def]
    private, queue = _own_queue(settings, "producer")
    client = redis.Redis.from_url(str(settings.redis_url))
    publisher = Publisher(private)
    try:
        assert publisher.publish_run(uuid.uuid4(), queue, "normal")
        mine = publisher.producer()
        assert publisher.publish_delivery(uuid.uuid4())
        assert publisher.producer() is mine  # kept across publishes and tasks
        other: list[object] = []
        thread = threading.Thread(target=lambda: other.append(publisher.producer()))
        thread.start()
        thread.join(10)
        assert other and other[0] is not mine
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: a producer of its own, and its publish arrives
            ok = publisher.producer() is not mine and publisher.publish_run(
                uuid.uuid4(), queue, "normal"
            )
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
        os.close(write)
        assert os.read(read, 1) == b"1"
        os.waitpid(pid, 0)
        assert publisher.publish_run(uuid.uuid4(), queue, "normal")  # the parent's still works
        assert _waiting(client, queue) == 3
    finally:
        _drop(client, queue)
        _drop(client, private.maintenance_queue_name)


def test_a_failed_publish_closes_the_threads_producer(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    proc = start_redis_server(port, tmp_path / "redis")
    private, queue = _own_queue(
        settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"}), "fail"
    )
    publisher = Publisher(private)
    try:
        assert publisher.publish_run(uuid.uuid4(), queue, "normal")
        before = publisher.producer()
        proc.terminate()
        proc.wait(timeout=10)
        assert not publisher.publish_run(uuid.uuid4(), queue, "normal")
        assert publisher.producer() is not before
    finally:
        proc.terminate()
        proc.wait(timeout=10)
