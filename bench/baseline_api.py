"""Baseline for api_create: a bare Flask view doing only INSERT + COMMIT + send_task.

No auth, no validation model, no idempotency lookup, no rate limit, no dispatched_at update:
the floor a job-accepting endpoint cannot go below on this stack. Served by gunicorn with the
settings of `modelcert api` (gthread, API_WORKERS workers, API_THREADS threads, keepalive 5).
Run: `python -m bench.baseline_api --bind 127.0.0.1:PORT --org ORG_ID --target TARGET_ID`.
"""

from __future__ import annotations

import argparse
import json
import uuid

from celery import Celery
from flask import Flask, Response, request
from sqlalchemy import create_engine, text

from app.config import settings_for_process
from app.queue.publisher import make_publisher_app

INSERT = text(
    "INSERT INTO certifications (id, organization_id, target_id, queue, suite_name, "
    "suite_version, suite_hash, status, priority, attempt, max_attempts, progress_done, "
    "progress_total, delivery_count) VALUES (:id, :org, :target, :queue, 'bench-trivial', "
    "'1.0.0', 'sha256:baseline', 'queued', 'normal', 0, 2, 0, 1, 0)"
)


def create_app(org: str, target: str) -> Flask:
    settings = settings_for_process()
    engine = create_engine(str(settings.database_url), pool_size=8, max_overflow=8)
    publisher: Celery = make_publisher_app(settings)
    queue = settings.certification_queue_name + "-baseline-api"
    app = Flask("baseline")

    @app.post("/v1/certifications")
    def create() -> Response:
        body = request.get_json()
        job_id = uuid.uuid4()
        with engine.begin() as conn:
            conn.execute(
                INSERT,
                {"id": job_id, "org": org, "target": body["target_id"] or target, "queue": queue},
            )
        publisher.send_task("bench.noop", args=[str(job_id)], queue=queue, retry=False)
        return Response(json.dumps({"id": str(job_id)}), status=202, mimetype="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", required=True)
    parser.add_argument("--org", required=True)
    parser.add_argument("--target", required=True)
    args = parser.parse_args()
    from gunicorn.app.base import BaseApplication

    settings = settings_for_process()

    class Baseline(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:  # the same settings as `modelcert api`
            self.cfg.set("bind", args.bind)
            self.cfg.set("workers", settings.api_workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", settings.api_threads)
            self.cfg.set("keepalive", 5)
            self.cfg.set("graceful_timeout", 30)
            self.cfg.set("timeout", 60)
            self.cfg.set("accesslog", None)
            self.cfg.set("proc_name", "modelcert-bench-baseline-api")

        def load(self) -> Flask:
            return create_app(args.org, args.target)

    Baseline().run()


if __name__ == "__main__":
    main()
