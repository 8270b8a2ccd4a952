"""Operator actions on a job: cancel, retry, and replay of a dead letter.

Each is a conditional UPDATE on the job's status, so it races safely with the worker's claim
and with itself; a new attempt is published after commit (the row is the outbox).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import job_events as events
from app.db import lifecycle
from app.db.lifecycle import TERMINAL_STATUSES, JobStatus
from app.db.models import Certification, DeadLetter, Target
from app.db.session import transaction
from app.schemas.resources import CertificationView
from app.services.auth import Principal
from app.services.certifications import get_certification, load_certification
from app.services.dispatch import publish_then_mark
from app.services.errors import Conflict, NotFound

PublishFn = Callable[[uuid.UUID, str, str], bool]
RETRYABLE_END = lifecycle.REQUEUE.sources


def cancel(
    factory: sessionmaker[Session], who: Principal, cert_id: uuid.UUID
) -> tuple[CertificationView, bool]:
    """(view, stopped now). Queued → cancelled at once; running → the worker stops it."""
    with transaction(factory) as session:
        row = load_certification(session, who, cert_id)
        done = session.execute(
            update(Certification)
            .where(Certification.id == row.id, Certification.status.in_(lifecycle.CANCEL.sources))
            .values(
                status=lifecycle.CANCEL.target,
                finished_at=func.now(),
                lease_until=None,
                cancel_requested_at=func.now(),
                error_cause="cancelled",
                error_message="cancelled by request before it ran",
            )
            .returning(Certification.id)
        ).first()
        if done is not None:
            events.certification_ended(session, row.id)
        else:
            running = session.execute(
                update(Certification)
                .where(Certification.id == row.id, Certification.status == JobStatus.RUNNING)
                .values(
                    cancel_requested_at=func.coalesce(Certification.cancel_requested_at, func.now())
                )
                .returning(Certification.id)
            ).first()
            if running is None:
                status = session.scalar(
                    select(Certification.status).where(Certification.id == row.id)
                )
                raise Conflict(
                    f"the certification is already {status.value if status else '?'}"
                    "; only a queued or running one can be cancelled"
                )
    with factory() as session:
        return get_certification(session, who, cert_id), done is not None


def _new_attempt(session: Session, cert_id: uuid.UUID, settings: Settings) -> bool:
    """A finished-but-unsuccessful job goes back to queued with a fresh attempt budget
    (never one of a deleted target: Conflict)."""
    deleted = session.scalar(
        select(Target.deleted_at)
        .join(Certification, Certification.target_id == Target.id)
        .where(Certification.id == cert_id)
    )
    if deleted is not None:
        raise Conflict(
            "the certification's target was deleted; its certifications are kept "
            "for audit but cannot run again"
        )
    row = session.execute(
        update(Certification)
        .where(Certification.id == cert_id, Certification.status.in_(lifecycle.REQUEUE.sources))
        .values(
            status=lifecycle.REQUEUE.target,
            max_attempts=Certification.attempt + settings.max_attempts,
            finished_at=None,
            lease_until=None,
            dispatched_at=None,
            next_attempt_at=None,
            cancel_requested_at=None,
            error_cause=None,
            error_message=None,
            verdict=None,
            score=None,
        )
        .returning(Certification.id)
    ).first()
    if row is None:
        return False
    session.execute(
        update(DeadLetter)
        .where(DeadLetter.certification_id == cert_id, DeadLetter.replayed_at.is_(None))
        .values(replayed_at=func.now())
    )
    return True


def _publish(factory: sessionmaker[Session], publish: PublishFn, cert_id: uuid.UUID) -> None:
    with factory() as session:
        queue, priority = session.execute(
            select(Certification.queue, Certification.priority).where(Certification.id == cert_id)
        ).one()
    publish_then_mark(factory, publish, cert_id, queue, priority.value)


def retry(
    factory: sessionmaker[Session],
    settings: Settings,
    publish: PublishFn,
    who: Principal,
    cert_id: uuid.UUID,
) -> CertificationView:
    with transaction(factory) as session:
        row = load_certification(session, who, cert_id)
        if not _new_attempt(session, row.id, settings):
            status = session.scalar(select(Certification.status).where(Certification.id == row.id))
            raise Conflict(
                f"the certification is {status.value if status else '?'}; only a "
                "failed, timed_out or cancelled one can be retried"
            )
    _publish(factory, publish, cert_id)
    with factory() as session:
        return get_certification(session, who, cert_id)


def replay_dead_letter(
    factory: sessionmaker[Session],
    settings: Settings,
    publish: PublishFn,
    who: Principal,
    letter_id: uuid.UUID,
) -> uuid.UUID:
    """Returns the certification id the replay re-queued."""
    with transaction(factory) as session:
        letter = session.scalar(
            select(DeadLetter)
            .where(DeadLetter.id == letter_id, DeadLetter.organization_id == who.organization_id)
            .with_for_update()
        )
        if letter is None:
            raise NotFound("no such dead letter")
        if letter.replayed_at is not None:
            raise Conflict("this dead letter was already replayed")
        if not _new_attempt(session, letter.certification_id, settings):
            raise Conflict("the certification is no longer failed (retried already?)")
        cert_id = letter.certification_id
    _publish(factory, publish, cert_id)
    return cert_id


__all__ = ["cancel", "retry", "replay_dead_letter", "TERMINAL_STATUSES"]
