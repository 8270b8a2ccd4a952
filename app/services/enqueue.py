"""Queue a certification on the system's behalf (re-certification, fingerprint change).

Inserted in the caller's transaction as an outbox row; published after commit, or by the
sweeper. The Idempotency-Key makes a second attempt for the same cause a no-op.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from app.certification.suites import SuiteError
from app.config import Settings
from app.db import jobs
from app.db.models import Target
from app.schemas.resources import CertificationCreate
from app.services.certifications import new_job_values, request_hash
from app.services.dispatch import publish_then_mark
from app.services.suites import resolve


@dataclass(frozen=True)
class Queued:
    """A job to publish after commit."""

    id: uuid.UUID
    queue: str
    priority: str


def enqueue(
    session: Session,
    settings: Settings,
    target: Target,
    *,
    suite_name: str,
    region: str | None,
    reason: str,
    idempotency_key: str,
    priority: str = "normal",
    judges: dict[str, str] | None = None,
) -> Queued | None:
    """Insert a queued certification unless one is active or this key was used already.
    `judges`: the judge bindings of the job it follows (a re-certification keeps them)."""
    if target.deleted_at is not None:
        return None
    if region is not None and region not in target.endpoints:
        return None
    try:
        suite = resolve(session, settings, target.organization_id, suite_name)
    except SuiteError:
        return None  # the suite was removed since: nothing to re-run
    if jobs.active_exists(session, target.id, region, suite.name):
        return None
    body = CertificationCreate(
        target_id=target.id, suite=suite.name, region=region, priority=priority
    )
    values = new_job_values(settings, target, suite, region, priority, reason, judges)
    row = jobs.insert_queued(session, values, idempotency_key, request_hash(body))
    if row is None:
        return None
    return Queued(row[0], row[1], priority)


def publish_queued(
    factory: sessionmaker[Session],
    publish: Callable[[uuid.UUID, str, str], bool],
    queued: Iterable[Queued],
) -> int:
    """After commit: publish and mark dispatched; what fails stays for the sweeper."""
    sent = 0
    for item in queued:
        if not publish_then_mark(factory, publish, item.id, item.queue, item.priority):
            break  # the broker is down: the sweeper publishes the rest
        sent += 1
    return sent
