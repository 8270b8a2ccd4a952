"""Re-certification (beat): queue a new run for each current certificate about to expire.

A target's current valid certificate (per region and suite) that expires within the
target's `recertify_before_days` gets one new certification with reason `recertification`,
the same suite and region. Idempotent: skipped while one is queued or running for that
target, region and suite, and the Idempotency-Key `recertification:<certificate id>` allows
one per certificate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.models import Certificate, Certification, Target
from app.db.session import transaction
from app.services.certificates import valid_now
from app.services.enqueue import Queued, enqueue, publish_queued

log = logging.getLogger(__name__)
RECERTIFY_LOCK = 0x726563657274  # pg advisory lock key: one pass at a time
REASON = "recertification"
PublishFn = Callable[..., bool]


@dataclass
class RecertifyReport:
    expiring: int = 0
    queued: list[Queued] = field(default_factory=list)
    published: int = 0
    skipped_locked: bool = False


def expiring(session: Session, batch: int = 500) -> list[tuple[Certificate, Certification, Target]]:
    """Current certificates inside their target's re-certification window."""
    window = func.make_interval(0, 0, 0, Target.recertify_before_days)
    rows = session.execute(
        select(Certificate, Certification, Target)
        .join(Certification, Certification.id == Certificate.certification_id)
        .join(Target, Target.id == Certificate.target_id)
        .where(
            valid_now(),
            Target.deleted_at.is_(None),
            Target.recertify_before_days > 0,
            Certificate.valid_until <= func.now() + window,
        )
        .order_by(Certificate.valid_until)
        .limit(batch)
    ).all()
    return [(c, j, t) for c, j, t in rows]


def recertify(
    factory: sessionmaker[Session], settings: Settings, publish: PublishFn | None = None
) -> RecertifyReport:
    report = RecertifyReport()
    with transaction(factory) as session:
        if not session.scalar(text(f"SELECT pg_try_advisory_xact_lock({RECERTIFY_LOCK})")):
            report.skipped_locked = True
            return report
        for certificate, job, target in expiring(session):
            report.expiring += 1
            item = enqueue(
                session,
                settings,
                target,
                suite_name=job.suite_name,
                region=job.region,
                reason=REASON,
                idempotency_key=f"{REASON}:{certificate.id}",
                judges=dict(job.judges or {}),
            )
            if item is not None:
                report.queued.append(item)
    if publish is not None and report.queued:
        report.published = publish_queued(factory, publish, report.queued)
    if report.queued:
        log.info(
            "recertification_queued",
            extra={"queued": len(report.queued), "expiring": report.expiring},
        )
    return report
