"""A webhook delivery whose message was lost (killed worker, restarted broker) is sent again
by the sweeper, once its next attempt is long overdue; fresh ones are left alone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from app.db.models import Webhook, WebhookDelivery
from app.db.session import transaction
from app.services import events
from app.services.auth import get_or_create_organization


def test_lost_sending_delivery_is_published_again(factory) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    with transaction(factory) as session:
        org = get_or_create_organization(session, f"hooks-{uuid.uuid4().hex[:6]}")
        hook = Webhook(
            organization_id=org.id,
            url="http://127.0.0.1:9/hook",
            secret_ciphertext=b"x",
            events=["certification.succeeded"],
        )
        session.add(hook)
        session.flush()
        lost = WebhookDelivery(
            webhook_id=hook.id,
            event_id="e-lost",
            event="x",
            payload={},
            status="sending",
            attempts=1,
            next_attempt_at=now - timedelta(minutes=10),
        )
        fresh = WebhookDelivery(
            webhook_id=hook.id,
            event_id="e-fresh",
            event="x",
            payload={},
            status="sending",
            attempts=1,
            next_attempt_at=now + timedelta(seconds=30),
        )
        session.add_all([lost, fresh])
        session.flush()
        lost_id, fresh_id = lost.id, fresh.id
    published: list[uuid.UUID] = []

    def publish(delivery_id: uuid.UUID) -> bool:
        published.append(delivery_id)
        return True

    events.redispatch_lost(factory, publish)
    assert lost_id in published and fresh_id not in published
    published.clear()
    events.redispatch_lost(factory, publish)  # just republished: not again at once
    assert lost_id not in published
