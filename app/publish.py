"""Publishing after commit, with a bounded wait: a broker outage never blocks a request."""

from __future__ import annotations

import logging
import uuid

from celery import Celery

from app import broker
from app.config import Settings
from app.task_names import (
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
    """Sends `run_certification` by name; returns False instead of raising when Redis is down."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        self.settings = settings
        self.app = app or make_publisher_app(settings)

    def publish_run(self, certification_id: uuid.UUID, queue: str, priority: str) -> bool:
        try:
            self.app.send_task(
                RUN_CERTIFICATION,
                args=[str(certification_id)],
                queue=queue,
                priority=PRIORITY_VALUES.get(priority, 3),
                retry=False,
            )
        except Exception as exc:  # noqa: BLE001 - any broker failure leaves the row for the sweeper
            log.warning("publish_failed", extra={"certification_id": str(certification_id),
                                                 "error": type(exc).__name__})
            return False
        return True

    def publish_delivery(self, delivery_id: uuid.UUID) -> bool:
        """`deliver_webhook(delivery_id)` on the maintenance queue; False when Redis is down."""
        try:
            self.app.send_task(DELIVER_WEBHOOK, args=[str(delivery_id)],
                               queue=self.settings.maintenance_queue_name, retry=False)
        except Exception as exc:  # noqa: BLE001 - the delivery row stays pending for the sweeper
            log.warning("publish_failed", extra={"delivery_id": str(delivery_id),
                                                 "error": type(exc).__name__})
            return False
        return True
