"""The worker process's Celery app (DESIGN §6): `celery -A worker.celery_app` finds `app` here.

Importing this module reads the environment (settings_for_process: exit 2 on a bad value);
build an app from Settings of your own with worker.celery_factory.make_celery.
"""

from __future__ import annotations

from celery import signals

from app.config import settings_for_process
from worker.celery_factory import STOP_JOBS, make_celery

__all__ = ["STOP_JOBS", "app", "make_celery", "settings"]

settings = settings_for_process()
app = make_celery(settings)

from worker import probes  # noqa: E402  (registers the probe bootstep and signals)

probes.install(app, settings)


@signals.setup_logging.connect(weak=False)
def _configure_logging(**_: object) -> None:
    from app.logging import configure_logging

    configure_logging(settings)
