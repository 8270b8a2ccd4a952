"""A job's webhook events, recorded as `webhook_deliveries` rows in the transaction that
sets the job's state: the outbox rows tied to a job (the jobs repository writes them with
every ending; app/services/events.py publishes them after commit).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Label,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.db import baselines
from app.db.base import table_of
from app.db.models import Certification, DeadLetter, Webhook, WebhookDelivery

CERTIFICATION_EVENTS = ("succeeded", "failed", "timed_out", "cancelled")
EVENTS = tuple(f"certification.{s}" for s in CERTIFICATION_EVENTS) + ("dead_letter.created",)
# Set in this process whenever a delivery row is recorded, so a worker dispatches after a job
# only when it may have something to send (the sweeper catches anything left behind).
_recorded_here = False


def recorded_since_last_dispatch() -> bool:
    global _recorded_here
    recorded, _recorded_here = _recorded_here, False
    return recorded


_HOOKS = table_of(Webhook).c


def _subscribed(org_id: Any, target_id: Any) -> ColumnElement[bool]:
    """The organization's active webhooks for all its targets or for this one."""
    return and_(
        _HOOKS.organization_id == org_id,
        _HOOKS.active.is_(True),
        or_(_HOOKS.target_id.is_(None), _HOOKS.target_id == target_id),
    )


def subscribed(org_id: ColumnElement[Any], target_id: ColumnElement[Any]) -> ColumnElement[bool]:
    """Whether any webhook would hear of a job's events (whatever events it subscribed to)."""
    return exists(select(_HOOKS.id).where(_subscribed(org_id, target_id)))


_SUBSCRIBED = select(_HOOKS.id, _HOOKS.events).where(
    _subscribed(bindparam("org_id"), bindparam("target_id"))
)


def subscriptions(org_id: ColumnElement[Any], target_id: ColumnElement[Any]) -> Label[Any]:
    """The webhooks subscribed to a job's events, as JSON `[[id, events], ...]`, for a
    statement that reads the job: the terminal UPDATE returns them with it."""
    listed = (
        select(func.json_agg(func.json_build_array(_HOOKS.id, _HOOKS.events)))
        .where(_subscribed(org_id, target_id))
        .scalar_subquery()
    )
    return func.coalesce(listed, literal_column("'[]'::json"), type_=JSON).label("subscriptions")


_INSERT_DELIVERY = insert(table_of(WebhookDelivery)).on_conflict_do_nothing(
    index_elements=["webhook_id", "event_id"]
)


def _record(
    session: Session,
    org_id: uuid.UUID,
    target_id: uuid.UUID | None,
    event: str,
    event_id: str,
    data: dict[str, Any],
    hooks: Sequence[Any] | None = None,
) -> int:
    """`hooks`: the subscriptions (id, events) if the caller read them, else read here."""
    if hooks is None:
        hooks = session.execute(_SUBSCRIBED, {"org_id": org_id, "target_id": target_id}).all()
    count = 0
    for hook_id, subscribed in hooks:
        if event not in (subscribed or []):
            continue
        payload = {
            "id": event_id,
            "type": event,
            "created_at": datetime.now(UTC).isoformat(),
            "data": data,
        }
        session.execute(
            _INSERT_DELIVERY,
            {
                "id": uuid.uuid4(),
                "webhook_id": hook_id,
                "event_id": event_id,
                "event": event,
                "payload": payload,
                "status": "pending",
                "attempts": 0,
            },
        )
        count += 1
    if count:
        global _recorded_here
        _recorded_here = True
    return count


ENDED_COLUMNS = (
    Certification.organization_id,
    Certification.target_id,
    Certification.status,
    Certification.verdict,
    Certification.attempt,
    Certification.error_cause,
    Certification.error_message,
    Certification.score,
)


def certification_ended(
    session: Session, cert_id: uuid.UUID, row: Any = None, hooks: Sequence[Any] | None = None
) -> int:
    """Call in the transaction that set the terminal status (after the UPDATE). `row`: the job
    (or its ENDED_COLUMNS) when that UPDATE returned it (saves reading it again); `hooks`:
    the `subscriptions` the same statement returned (None: read them)."""
    if row is None:
        row = session.execute(select(*ENDED_COLUMNS).where(Certification.id == cert_id)).first()
    if row is None or row.status.value not in CERTIFICATION_EVENTS:
        return 0
    data = {
        "certification_id": str(cert_id),
        "target_id": str(row.target_id),
        "status": row.status.value,
        "verdict": row.verdict.value if row.verdict else None,
        "score": row.score,
        "attempt": row.attempt,
        "error": {"cause": row.error_cause, "message": row.error_message}
        if row.error_cause
        else None,
    }
    if row.status.value == "succeeded":  # what it was compared with, and what regressed
        data["regressions"] = baselines.found(session, cert_id)
    event = f"certification.{row.status.value}"
    return _record(
        session,
        row.organization_id,
        row.target_id,
        event,
        f"{cert_id}:{event}:{row.attempt}",
        data,
        None if hooks is None else [(uuid.UUID(i), e) for i, e in hooks],
    )


def dead_letter_created(session: Session, letter: DeadLetter) -> int:
    session.flush()
    target_id = session.scalar(
        select(Certification.target_id).where(Certification.id == letter.certification_id)
    )
    data = {
        "dead_letter_id": str(letter.id),
        "certification_id": str(letter.certification_id),
        "target_id": str(target_id) if target_id else None,
        "cause": letter.cause,
        "last_error": letter.last_error,
        "attempts": letter.attempts,
    }
    return _record(
        session,
        letter.organization_id,
        target_id,
        "dead_letter.created",
        f"dead_letter:{letter.id}",
        data,
    )
