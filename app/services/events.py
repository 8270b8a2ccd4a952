"""Webhook events, recorded as `webhook_deliveries` rows in the transaction that sets the state.

The rows are an outbox: `dispatch_pending` publishes `deliver_webhook` for each after commit
(the worker after a job, the sweeper for anything left behind).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
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
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from app.db.base import table_of
from app.db.models import Certification, DeadLetter, Webhook, WebhookDelivery
from app.db.session import transaction
from app.services import baselines

CERTIFICATION_EVENTS = ("succeeded", "failed", "timed_out", "cancelled")
EVENTS = tuple(f"certification.{s}" for s in CERTIFICATION_EVENTS) + ("dead_letter.created",)
PublishDelivery = Callable[[uuid.UUID], bool]
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


def dispatch_pending(
    factory: sessionmaker[Session], publish: PublishDelivery, batch: int = 100
) -> int:
    """Publish `deliver_webhook` for recorded, undispatched deliveries; False leaves them."""
    sent = 0
    with transaction(factory) as session:
        ids = session.scalars(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.status == "pending")
            .order_by(WebhookDelivery.created_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        for delivery_id in ids:
            if not publish(delivery_id):
                break  # broker down: the sweeper tries again
            session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id)
                .values(status="sending", next_attempt_at=func.now())
            )
            sent += 1
    return sent


def redispatch_lost(
    factory: sessionmaker[Session],
    publish: PublishDelivery,
    lost_after_seconds: float = 120.0,
    batch: int = 100,
) -> int:
    """Publish again the `sending` deliveries whose next attempt is long overdue: their message
    was lost (a killed worker held its countdown, or the broker restarted). Delivery is
    at-least-once; receivers deduplicate on X-Modelcert-Delivery."""
    sent = 0
    with transaction(factory) as session:
        ids = session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status == "sending",
                WebhookDelivery.next_attempt_at
                < func.now() - timedelta(seconds=lost_after_seconds),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        for delivery_id in ids:
            if not publish(delivery_id):
                break
            session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id)
                .values(next_attempt_at=func.now())
            )
            sent += 1
    return sent
