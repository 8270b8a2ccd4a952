"""The outbox sweeper (beat): publish what was never dispatched, requeue expired leases,
dead-letter jobs out of attempts, and redispatch jobs whose message the broker lost."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import job_events as events
from app.db import jobs, lifecycle
from app.db.lifecycle import CLAIMABLE_STATUSES
from app.db.models import Certification, DeadLetter, Priority
from app.db.session import transaction

log = logging.getLogger(__name__)
SWEEP_LOCK = 0x6D6F64656C  # pg advisory lock key: one sweeper at a time
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


def _expire_leases(session: Session, report: SweepReport) -> None:
    requeued = session.execute(
        update(Certification)
        .where(
            Certification.status.in_(lifecycle.EXPIRE_LEASE.sources),
            Certification.lease_until < func.now(),
            Certification.attempt < Certification.max_attempts,
        )
        .values(
            status=lifecycle.EXPIRE_LEASE.target,
            lease_until=None,
            dispatched_at=None,
            next_attempt_at=func.now(),
            error_cause="lease_expired",
            error_message="the worker stopped renewing its lease (killed or lost)",
        )
        .returning(Certification.id)
    ).all()
    report.requeued += len(requeued)
    exhausted = session.execute(
        update(Certification)
        .where(
            Certification.status.in_(lifecycle.EXPIRE_EXHAUSTED.sources),
            Certification.lease_until < func.now(),
            Certification.attempt >= Certification.max_attempts,
        )
        .values(
            status=lifecycle.EXPIRE_EXHAUSTED.target,
            lease_until=None,
            finished_at=func.now(),
            error_cause="lease_expired",
            error_message="the worker was lost on every attempt (poison job?)",
        )
        .returning(Certification.id, Certification.organization_id, Certification.attempt)
    ).all()
    for cert_id, org_id, attempts in exhausted:
        letter = DeadLetter(
            certification_id=cert_id,
            organization_id=org_id,
            cause="lease_expired",
            attempts=attempts,
            last_error="the worker was lost on every attempt",
        )
        session.add(letter)
        events.dead_letter_created(session, letter)
        events.certification_ended(session, cert_id)
    report.dead_lettered += len(exhausted)


def _age_low_priority(
    session: Session, publish: PublishFn, report: SweepReport, aging_seconds: float, batch: int
) -> None:
    """Low must not starve: a low job waiting longer than `aging_seconds` since its last
    dispatch gets a second message at normal priority. The first message stays; whichever
    arrives first claims the job and the other is dropped by the claim."""
    aged = session.execute(
        select(Certification.id, Certification.queue)
        .where(
            Certification.status.in_(CLAIMABLE_STATUSES),
            Certification.priority == Priority.LOW,
            Certification.dispatched_at.is_not(None),
            Certification.dispatched_at < func.now() - timedelta(seconds=aging_seconds),
            or_(
                Certification.next_attempt_at.is_(None), Certification.next_attempt_at <= func.now()
            ),
        )
        .order_by(Certification.created_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
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
        if not session.scalar(text(f"SELECT pg_try_advisory_xact_lock({SWEEP_LOCK})")):
            report.skipped_locked = True
            return report
        _expire_leases(session, report)
        due = session.execute(
            select(
                Certification.id,
                Certification.queue,
                Certification.priority,
                Certification.dispatched_at,
            )
            .where(
                Certification.status.in_(CLAIMABLE_STATUSES),
                or_(
                    Certification.next_attempt_at.is_(None),
                    Certification.next_attempt_at <= func.now(),
                ),
                or_(
                    Certification.dispatched_at.is_(None),
                    Certification.dispatched_at
                    < func.now() - timedelta(seconds=lost_after_seconds),
                ),
                Certification.created_at < func.now() - timedelta(seconds=publish_grace_seconds),
            )
            .order_by(Certification.created_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
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
    return report
