"""make_celery(settings): the worker's Celery configuration (DESIGN §6), with no side effects.

Kept apart from `worker.celery_app`, which builds the process's app from the environment at
import, so that tests and tools can build an app from a Settings of their own."""

from __future__ import annotations

import multiprocessing

from celery import Celery
from kombu import Queue

from app.config import Settings
from app.queue.names import DELIVER_WEBHOOK, RECERTIFY, SWEEP
from app.queue.publisher import broker_transport_options
from worker import malformed

# Shared with pool children forked later: set when the grace period after SIGTERM runs out,
# so running jobs stop at the next sample boundary and go back to the queue.
STOP_JOBS = multiprocessing.Value("b", 0, lock=False)
RECERTIFY_INTERVAL = 300.0  # seconds; windows are days long, so a few minutes is plenty


def make_celery(settings: Settings) -> Celery:
    if settings.visibility_timeout <= settings.hard_time_limit:
        raise SystemExit("config error: the broker visibility timeout must exceed the hard limit")
    app = Celery("modelcert", broker=settings.redis_url, include=["worker.tasks"])
    queue = settings.certification_queue_name
    maintenance = settings.maintenance_queue_name
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        result_accept_content=["json"],
        # app/broker.py's transport, and a message it cannot decode is moved aside.
        broker_transport=malformed.TRANSPORT,
        worker_consumer=malformed.CONSUMER,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_soft_time_limit=settings.certification_timeout,
        task_time_limit=settings.hard_time_limit,
        broker_transport_options=broker_transport_options(settings)
        | {"unacked_restore_throttle": 1, "malformed_key": settings.malformed_list_name},
        broker_connection_retry_on_startup=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_concurrency=settings.certification_concurrency,
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child,
        worker_max_memory_per_child=settings.worker_max_memory_per_child,
        worker_hijack_root_logger=False,
        task_default_queue=queue,
        task_queues=[Queue(queue), Queue(maintenance)],
        task_create_missing_queues=True,
        task_routes={
            SWEEP: {"queue": maintenance},
            RECERTIFY: {"queue": maintenance},
            DELIVER_WEBHOOK: {"queue": maintenance},
        },
        beat_schedule={
            "sweep": {
                "task": SWEEP,
                "schedule": float(settings.sweeper_interval),
                "options": {"queue": maintenance, "expires": settings.sweeper_interval * 3},
            },
            "recertify": {
                "task": RECERTIFY,
                "schedule": RECERTIFY_INTERVAL,
                "options": {"queue": maintenance, "expires": RECERTIFY_INTERVAL},
            },
        },
        beat_schedule_filename=str(settings.modelcert_data_dir / "celerybeat-schedule"),
    )
    # Nothing else goes into app.conf: `celery inspect conf` and Flower's worker page show it,
    # masking keys by name only, so the settings (URLs with passwords) reach the probes
    # through probes.install instead.
    return app
