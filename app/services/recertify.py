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

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import certificates as certificate_rows
from app.db.session import transaction
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


def recertify(
    factory: sessionmaker[Session], settings: Settings, publish: PublishFn | None = None
) -> RecertifyReport:
    report = RecertifyReport()
    with transaction(factory) as session:
        if not session.scalar(text(f"SELECT pg_try_advisory_xact_lock({RECERTIFY_LOCK})")):
            report.skipped_locked = True
            return report
        for certificate, job, target in certificate_rows.expiring(session):
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
