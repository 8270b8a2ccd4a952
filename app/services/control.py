"""Operator actions on a job: cancel, retry, and replay of a dead letter.

Each is a conditional UPDATE on the job's status (app/db/jobs.py), so it races safely with
the worker's claim and with itself; a new attempt is published after commit (the row is the
outbox).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import jobs, lifecycle
from app.db.lifecycle import TERMINAL_STATUSES
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
        done = jobs.cancel_waiting(session, row.id, requested_before=False)
        if not done and not jobs.request_cancel(session, row.id):
            status = jobs.status_of(session, row.id)
            raise Conflict(
                f"the certification is already {status.value if status else '?'}"
                "; only a queued or running one can be cancelled"
            )
    with factory() as session:
        return get_certification(session, who, cert_id), done


def _new_attempt(session: Session, cert_id: uuid.UUID, settings: Settings) -> bool:
    """A finished-but-unsuccessful job goes back to queued with a fresh attempt budget
    (never one of a deleted target: Conflict)."""
    if jobs.target_deleted_at(session, cert_id) is not None:
        raise Conflict(
            "the certification's target was deleted; its certifications are kept "
            "for audit but cannot run again"
        )
    return jobs.requeue(session, cert_id, settings.max_attempts)


def _publish(factory: sessionmaker[Session], publish: PublishFn, cert_id: uuid.UUID) -> None:
    queue, priority = jobs.routing_of(factory, cert_id)
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
            status = jobs.status_of(session, row.id)
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
        letter = jobs.dead_letter_for_update(session, letter_id, who.organization_id)
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
