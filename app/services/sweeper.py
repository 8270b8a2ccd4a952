"""The outbox sweeper (beat): publish what was never dispatched, requeue expired leases,
dead-letter jobs out of attempts, and redispatch jobs whose message the broker lost."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from app.db import jobs
from app.db.models import Priority
from app.db.session import transaction

log = logging.getLogger(__name__)
PublishFn = Callable[[uuid.UUID, str, str], bool]
DepthFn = Callable[[str], int | None]


@dataclass
class SweepReport:
    published: int = 0
    publish_failed: int = 0
    requeued: int = 0
    dead_lettered: int = 0
    redispatched: int = 0
    aged: int = 0
    skipped_locked: bool = False
    ids: list[str] = field(default_factory=list)


def _age_low_priority(
    session: Session, publish: PublishFn, report: SweepReport, aging_seconds: float, batch: int
) -> None:
    """Low must not starve: a low job waiting longer than `aging_seconds` since its last
    dispatch gets a second message at normal priority. The first message stays; whichever
    arrives first claims the job and the other is dropped by the claim."""
    aged = jobs.waiting_low_priority(session, aging_seconds, batch)
    for cert_id, queue in aged:
        if not publish(cert_id, queue, Priority.NORMAL.value):
            report.publish_failed += 1
            return
        jobs.mark_dispatched(session, cert_id, again=True)
        report.aged += 1
        report.ids.append(str(cert_id))


def sweep(
    factory: sessionmaker[Session],
    publish: PublishFn,
    queue_depth: DepthFn | None = None,
    *,
    publish_grace_seconds: float = 2.0,
    lost_after_seconds: float = 30.0,
    batch: int = 500,
    low_aging_seconds: float | None = None,
) -> SweepReport:
    report = SweepReport()
    with transaction(factory) as session:
        if not jobs.lock_for_sweep(session):
            report.skipped_locked = True
            return report
        report.requeued, report.dead_lettered = jobs.expire_leases(session)
        due = jobs.due_for_publish(
            session,
            publish_grace_seconds=publish_grace_seconds,
            lost_after_seconds=lost_after_seconds,
            batch=batch,
        )
        depth_cache: dict[str, int | None] = {}
        for cert_id, queue, priority, dispatched_at in due:
            if dispatched_at is not None:
                # Dispatched long ago and still waiting: only a lost message explains an empty
                # queue; otherwise it is just waiting its turn.
                if queue not in depth_cache:
                    depth_cache[queue] = queue_depth(queue) if queue_depth else None
                if depth_cache[queue] != 0:
                    continue
            if publish(cert_id, queue, priority.value):
                jobs.mark_dispatched(session, cert_id, again=True)
                if dispatched_at is None:
                    report.published += 1
                else:
                    report.redispatched += 1
                report.ids.append(str(cert_id))
            else:
                report.publish_failed += 1
                break  # the broker is down: the next sweep tries again
        if low_aging_seconds and not report.publish_failed:
            _age_low_priority(session, publish, report, low_aging_seconds, batch)
    _log(report)
    return report


def _log(report: SweepReport) -> None:
    """One line when the sweep did anything."""
    if (
        report.published
        or report.requeued
        or report.dead_lettered
        or report.redispatched
        or report.aged
    ):
        log.info(
            "sweep_finished",
            extra={
                "published": report.published,
                "requeued": report.requeued,
                "dead_lettered": report.dead_lettered,
                "redispatched": report.redispatched,
                "aged": report.aged,
            },
        )
