"""Publishing after commit, with a bounded wait: a broker outage never blocks a request."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from typing import Any

from celery import Celery
from kombu.messaging import Producer

from app.config import Settings
from app.queue import transport as broker
from app.queue.names import (
    DELIVER_WEBHOOK,
    PRIORITY_STEPS,
    PRIORITY_VALUES,
    RUN_CERTIFICATION,
)

log = logging.getLogger(__name__)


def broker_transport_options(settings: Settings) -> dict[str, object]:
    """Shared by the publisher and the worker so both see the same queues and priorities."""
    timeout = settings.broker_publish_timeout
    return {
        "visibility_timeout": settings.visibility_timeout,
        "priority_steps": PRIORITY_STEPS,
        "sep": ":",
        "queue_order_strategy": "priority",
        "socket_connect_timeout": timeout,
        "socket_timeout": max(timeout, 5.0),
        "retry_on_timeout": False,
        "health_check_interval": 10,
    }


def make_publisher_app(settings: Settings) -> Celery:
    app = Celery("modelcert-publisher", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        broker_transport=broker.TRANSPORT,
        # Fail fast: one quick reconnect, then give the row to the sweeper (kombu otherwise
        # sleeps 2 s before its first retry even when the connection is refused at once).
        broker_transport_options=broker_transport_options(settings)
        | {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
        broker_connection_timeout=settings.broker_publish_timeout,
        broker_connection_retry=False,
        broker_connection_max_retries=0,
        task_publish_retry=False,
        task_ignore_result=True,
        result_backend=None,
    )
    return app


class Publisher:
    """Sends `run_certification` by name; returns False instead of raising when Redis is down.

    Each thread publishes through a producer (and broker connection) of its own, kept across
    publishes: taking one from Celery's producer pool for each message rebinds it to a
    channel every time. A producer that failed is closed, and the thread's next publish opens
    a new one (so does a forked child: the producer belongs to the process that opened it).
    Queues are not declared: a message is sent to the queue's own Redis list (the anonymous
    exchange), which declaring only binds again on every publish; the workers declare the
    queues they consume. `argsrepr`/`kwargsrepr` (shown by Flower) are given, not computed."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        self.settings = settings
        self.app = app or make_publisher_app(settings)
        self._local = threading.local()
        self._job_queues = frozenset(settings.job_queues)

    def publish_run(self, certification_id: uuid.UUID, queue: str, priority: str) -> bool:
        if queue not in self._job_queues:
            # Only the operator's queues are ever published to (issue #22): a job stored
            # before that, with a tenant's queue name, or of a region since unmapped, runs
            # on the default queue.
            log.warning(
                "publish_queue_not_configured",
                extra={"certification_id": str(certification_id), "queue": queue[:200]},
            )
            queue = self.settings.certification_queue_name
        try:
            self._send(
                RUN_CERTIFICATION,
                str(certification_id),
                queue,
                priority=PRIORITY_VALUES.get(priority, 3),
            )
        except Exception as exc:  # noqa: BLE001 - any broker failure leaves the row for the sweeper
            log.warning(
                "publish_failed",
                extra={"certification_id": str(certification_id), "error": type(exc).__name__},
            )
            return False
        return True

    def publish_delivery(self, delivery_id: uuid.UUID) -> bool:
        """`deliver_webhook(delivery_id)` on the maintenance queue; False when Redis is down."""
        try:
            self._send(DELIVER_WEBHOOK, str(delivery_id), self.settings.maintenance_queue_name)
        except Exception as exc:  # noqa: BLE001 - the delivery row stays pending for the sweeper
            log.warning(
                "publish_failed",
                extra={"delivery_id": str(delivery_id), "error": type(exc).__name__},
            )
            return False
        return True

    def _send(self, task: str, arg: str, queue: str, **options: Any) -> None:
        """send_task(task, args=[arg]) to `queue` on this thread's producer; `options` are
        send_task's own (priority)."""
        producer = self.producer()
        try:
            self.app.send_task(
                task,
                args=[arg],
                queue=queue,
                producer=producer,
                declare=(),
                argsrepr=repr([arg]),
                kwargsrepr="{}",
                retry=False,
                **options,
            )
        except BaseException:
            self._local.producer = None
            with contextlib.suppress(Exception):
                if producer.connection is not None:
                    producer.connection.close()
            raise

    def producer(self) -> Producer:
        """This thread's producer, kept across publishes (a producer and its connection per
        publish cost more than the publish); a forked child opens its own, since a
        connection must not be shared across a fork."""
        pid, producer = getattr(self._local, "producer", None) or (None, None)
        if producer is None or pid != os.getpid():
            producer = self.app.amqp.Producer(self.app.connection_for_write(), auto_declare=False)
            self._local.producer = (os.getpid(), producer)
        return producer
