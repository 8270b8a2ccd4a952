"""Webhook events: publishing the `webhook_deliveries` outbox rows after commit.

The rows are recorded in the transaction that sets a job's state (app/db/job_events.py);
`dispatch_pending` publishes `deliver_webhook` for each after commit (the worker after a
job, the sweeper for anything left behind).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.job_events import recorded_since_last_dispatch
from app.db.models import WebhookDelivery
from app.db.session import transaction

PublishDelivery = Callable[[uuid.UUID], bool]
__all__ = ["dispatch_pending", "recorded_since_last_dispatch", "redispatch_lost"]


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
