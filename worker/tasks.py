"""Thin tasks: one service call each; the service asserts the world (conditional claim)."""

from __future__ import annotations

import gc
import logging
import socket
import time
import uuid
from dataclasses import replace
from functools import lru_cache
from typing import Any

import redis
from celery import Task, signals
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.certification.checks import TargetSpec
from app.certification.runner import JudgeEndpoint
from app.db.session import dispose, make_engine, make_session_factory
from app.logging import bind_job
from app.queue.names import (
    DELIVER_WEBHOOK,
    RECERTIFY,
    RUN_CERTIFICATION,
    SWEEP,
    priority_lists,
)
from app.queue.publisher import Publisher
from app.services import events, ratelimit, run, sweeper, webhooks
from app.services import recertify as recertify_service
from worker import metrics
from worker.celery_app import STOP_JOBS, app, settings
from worker.job_loop import JOB_LOOP
from worker.lease import keeper_for

log = logging.getLogger(__name__)
WORKER_NAME = f"{socket.gethostname()}"


@lru_cache(maxsize=1)
def session_factory() -> sessionmaker[Session]:
    """Created in the main process by the warm-up; each forked child drops the pooled
    connections it inherited (SQLAlchemy's fork recipe, db/session._forget_pools) and keeps
    the compiled statements."""
    return make_session_factory(
        make_engine(str(settings.database_url), pool_size=2, application_name="modelcert-worker")
    )


def _engine() -> Engine | None:
    """The engine, if this process (or the parent it was forked from) created it."""
    if not session_factory.cache_info().currsize:
        return None
    engine: Engine = session_factory().kw["bind"]
    return engine


@signals.worker_init.connect(weak=False)
def warm_up_before_fork(**_: object) -> None:
    try:
        compiled = run.warm_up(session_factory(), settings)
        log.info("worker_warmed_up", extra={"statements": compiled})
    except Exception:  # noqa: BLE001 - the database may be down: children compile on first use
        log.warning("worker_warm_up_failed", exc_info=True)
    finally:
        if (engine := _engine()) is not None:
            dispose(engine)  # no open connection for the children to inherit
        gc.freeze()


@lru_cache(maxsize=1)
def publisher() -> Publisher:
    return Publisher(settings)


def queue_depth(client: redis.Redis, queue: str) -> int:
    """Sum of LLEN over the queue's priority lists (CELERY-FACTS)."""
    pipe = client.pipeline()
    for name in priority_lists(queue):
        pipe.llen(name)
    return int(sum(pipe.execute()))


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(str(settings.redis_url), socket_connect_timeout=2, socket_timeout=2)


def _hooks() -> run.RunHooks:
    """Per job. The gate factory sees the target first, so the endpoint metrics carry its real
    provider label and the shared limiter hears about 429s (AIMD)."""
    seen: dict[str, Any] = {"provider": "unknown", "gate": None}
    # The labelled series each (provider, outcome) counts into, looked up once per job: a
    # check sends up to thousands of requests, and `labels()` is half of a response's
    # metrics cost.
    series: dict[tuple[str, str], tuple[Any, Any]] = {}

    def gate_factory(spec: TargetSpec) -> ratelimit.EndpointLimiter | None:
        seen["provider"] = spec.provider
        seen["gate"] = gate = ratelimit.gate_for(
            str(settings.redis_url),
            spec.base_url,
            spec.region,
            spec.rate_limit_rps,
            spec.max_concurrency,
        )
        return gate

    def on_response(outcome: str, seconds: float) -> None:
        key = (seen["provider"], outcome)
        pair = series.get(key)
        if pair is None:
            pair = series[key] = (
                metrics.ENDPOINT_REQUESTS.labels(*key),
                metrics.ENDPOINT_LATENCY.labels(key[0]),
            )
        pair[0].inc()
        pair[1].observe(seconds)
        if seen["gate"] is not None:
            seen["gate"].observe(outcome)

    def judge_endpoint(judge: JudgeEndpoint) -> JudgeEndpoint:
        """A judge model's requests: through its own shared limiter, counted under its own
        provider (a judge's 429 slows the judge, never the target)."""
        spec = judge.spec
        gate = ratelimit.gate_for(
            str(settings.redis_url),
            spec.base_url,
            spec.region,
            spec.rate_limit_rps,
            spec.max_concurrency,
        )

        def on_response(outcome: str, seconds: float) -> None:
            metrics.ENDPOINT_REQUESTS.labels(spec.provider, outcome).inc()
            metrics.ENDPOINT_LATENCY.labels(spec.provider).observe(seconds)
            if gate is not None:
                gate.observe(outcome)

        return replace(judge, gate=gate or judge.gate, on_response=on_response)

    def on_finished(status: str, verdict: str | None, _: float | None) -> None:
        metrics.CERTIFICATIONS.labels(status, verdict or "none").inc()

    def on_job_retry(kind: str, cause: str) -> None:
        if kind == "retry":
            metrics.RETRIES.labels(f"job_{cause}").inc()
        else:
            metrics.DEAD_LETTERS.inc()

    return run.RunHooks(
        lease=keeper_for(session_factory(), settings.certification_lease_seconds),
        run_async=JOB_LOOP.run,
        shutting_down=lambda: bool(STOP_JOBS.value),
        on_response=on_response,
        on_retry=lambda exc: metrics.RETRIES.labels(exc.cause).inc(),
        on_finished=on_finished,
        on_job_retry=on_job_retry,
        publish=publisher().publish_run,
        # RunHooks' annotation leaves out the None an unlimited endpoint's factory returns
        # (run.py reads it as "no gate"); it is corrected where the hooks move.
        gate_factory=gate_factory,
        judge_endpoint=judge_endpoint,
    )


def caused_by_soft_limit(exc: BaseException | None) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, SoftTimeLimitExceeded):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _dispatch_deliveries(everything: bool = False) -> None:
    """Publish recorded webhook deliveries; never lets a failure reach the job. After a job,
    only when this process recorded one; the sweeper (`everything`) publishes whatever is left."""
    if not events.recorded_since_last_dispatch() and not everything:
        return
    try:
        events.dispatch_pending(session_factory(), publisher().publish_delivery)
        if everything:
            events.redispatch_lost(session_factory(), publisher().publish_delivery)
    except Exception:  # noqa: BLE001 - the sweeper publishes what is left
        log.warning("webhook_dispatch_failed", exc_info=True)


@app.task(name=RUN_CERTIFICATION, bind=True)
def run_certification(self: Task[[str], str], certification_id: str) -> str:
    started = time.monotonic()
    bind_job(certification_id=certification_id, task_id=self.request.id)
    metrics.ACTIVE.inc()
    outcome = "error"
    try:
        outcome = run.run_certification(
            session_factory(),
            settings,
            certification_id,
            self.request.hostname or WORKER_NAME,
            _hooks(),
        )
    except Exception as exc:
        if caused_by_soft_limit(exc):
            # The soft limit may land inside a database call; the driver then reports its own
            # error (e.g. a rollback refused mid-query) with SoftTimeLimitExceeded as context.
            run.time_out(session_factory(), certification_id)
            metrics.CERTIFICATIONS.labels("timed_out", "none").inc()
            outcome = "timed_out"
        else:
            # A bug or a lost database: the lease expires and the sweeper requeues the job.
            log.exception("certification_crashed")
            outcome = "crashed"
    finally:
        metrics.ACTIVE.dec()
        metrics.DURATION.labels(outcome).observe(time.monotonic() - started)
        log.info("certification_delivery_done", extra={"outcome": outcome})
        bind_job()
        _dispatch_deliveries()
    return outcome


@app.task(name=DELIVER_WEBHOOK, bind=True, ignore_result=True, soft_time_limit=30, time_limit=60)
def deliver_webhook(self: Task[[str], str], delivery_id: str) -> str:
    try:
        parsed = uuid.UUID(delivery_id)
    except ValueError:
        return "rejected"
    outcome = webhooks.deliver(session_factory(), settings, parsed)
    metrics.WEBHOOK_DELIVERIES.labels(outcome.status).inc()
    if outcome.status == "retry":
        raise self.retry(
            countdown=outcome.retry_in,
            max_retries=settings.webhook_max_attempts,
        )
    return outcome.status


@app.task(name=SWEEP, ignore_result=True)
def sweep() -> dict[str, int]:
    client = redis_client()

    def depth(queue: str) -> int | None:
        try:
            return queue_depth(client, queue)
        except redis.RedisError:
            return None

    report = sweeper.sweep(
        session_factory(),
        publisher().publish_run,
        depth,
        lost_after_seconds=max(30.0, settings.sweeper_interval * 3),
        low_aging_seconds=settings.certification_low_priority_aging,
    )
    _dispatch_deliveries(everything=True)
    if report.dead_lettered:
        metrics.DEAD_LETTERS.inc(report.dead_lettered)
    return {
        "published": report.published,
        "requeued": report.requeued,
        "dead_lettered": report.dead_lettered,
        "redispatched": report.redispatched,
    }


@app.task(name=RECERTIFY, ignore_result=True)
def recertify() -> dict[str, int]:
    report = recertify_service.recertify(session_factory(), settings, publisher().publish_run)
    return {
        "expiring": report.expiring,
        "queued": len(report.queued),
        "published": report.published,
    }
