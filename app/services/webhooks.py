"""Webhooks: per organization (optionally per target), signed, delivered with retries.

Signature: `X-Modelcert-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, so a
receiver can refuse stale or replayed bodies. The secret is shown once and stored encrypted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.certification.netguard import AddressPolicy, check_url
from app.certification.providers.http import BlockedAddressError
from app.config import Settings
from app.db.models import Secret, Target, Webhook, WebhookDelivery
from app.db.session import transaction
from app.redaction import redact_obj
from app.schemas.operations import DeliveryView, WebhookCreate, WebhookCreated, WebhookView
from app.services.auth import Principal
from app.services.errors import InvalidField, NotFound
from app.services.pagination import page
from app.services.secrets import SecretBox
from app.services.webhook_transport import (
    BLOCKED,
    CONNECTION_FAILED,
    DeliveryFailed,
    send,
)

SIGNATURE_HEADER = "X-Modelcert-Signature"


def _policy(settings: Settings) -> AddressPolicy:
    return AddressPolicy(allow_private=settings.modelcert_allow_private_targets)


def to_view(row: Webhook) -> WebhookView:
    return WebhookView(
        id=row.id,
        url=row.url,
        events=list(row.events),
        target_id=row.target_id,
        active=row.active,
        created_at=row.created_at,
    )


def create_webhook(
    session: Session, settings: Settings, who: Principal, body: WebhookCreate
) -> WebhookCreated:
    if body.target_id is not None:
        owned = session.scalar(
            select(Target.id).where(
                Target.id == body.target_id,
                Target.organization_id == who.organization_id,
                Target.deleted_at.is_(None),
            )
        )
        if owned is None:
            raise InvalidField(["body", "target_id"], "no such target")
    try:  # the same SSRF guard as targets; checked again at every delivery
        check_url(body.url, _policy(settings))
    except BlockedAddressError as exc:
        raise InvalidField(["body", "url"], str(exc)) from None
    secret = "whsec_" + secrets.token_urlsafe(32)
    row = Webhook(
        organization_id=who.organization_id,
        target_id=body.target_id,
        url=body.url,
        secret_ciphertext=SecretBox.from_settings(settings).encrypt(secret),
        events=sorted(set(body.events)),
        active=True,
    )
    session.add(row)
    session.flush()
    return WebhookCreated(**to_view(row).model_dump(), secret=secret)


def load_webhook(session: Session, who: Principal, webhook_id: uuid.UUID) -> Webhook:
    row = session.scalar(
        select(Webhook).where(
            Webhook.id == webhook_id,
            Webhook.organization_id == who.organization_id,
            Webhook.active.is_(True),
        )
    )
    if row is None:
        raise NotFound("no such webhook")
    return row


def list_webhooks(
    session: Session, who: Principal, cursor: str | None, limit: int
) -> tuple[list[WebhookView], str | None]:
    query = select(Webhook).where(
        Webhook.organization_id == who.organization_id, Webhook.active.is_(True)
    )
    rows, next_cursor = page(session, query, Webhook, cursor, limit)
    return [to_view(r) for r in rows], next_cursor


def delete_webhook(session: Session, who: Principal, webhook_id: uuid.UUID) -> None:
    """Deactivate (the delivery log stays readable for audits; pending deliveries stop)."""
    row = load_webhook(session, who, webhook_id)
    row.active = False


def list_deliveries(
    session: Session, who: Principal, webhook_id: uuid.UUID, cursor: str | None, limit: int
) -> tuple[list[DeliveryView], str | None]:
    hook = session.scalar(
        select(Webhook.id).where(
            Webhook.id == webhook_id, Webhook.organization_id == who.organization_id
        )
    )
    if hook is None:
        raise NotFound("no such webhook")
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    rows, next_cursor = page(session, query, WebhookDelivery, cursor, limit)
    return [
        DeliveryView(
            id=r.id,
            event_id=r.event_id,
            event=r.event,
            status=r.status,
            attempts=r.attempts,
            last_status_code=r.last_status_code,
            last_error=r.last_error,
            created_at=r.created_at,
            delivered_at=r.delivered_at,
            payload=r.payload,
        )
        for r in rows
    ], next_cursor


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


@dataclass(frozen=True)
class DeliveryOutcome:
    status: str  # delivered | retry | failed | gone
    attempts: int = 0
    # For `retry`: seconds until the next attempt, the same delay that was stored as the
    # delivery's next_attempt_at (the sweeper's redispatch_lost reads it).
    retry_in: float | None = None


def deliver(
    factory: sessionmaker[Session], settings: Settings, delivery_id: uuid.UUID
) -> DeliveryOutcome:
    """One delivery attempt; never raises for a receiver's failure."""
    with factory() as session:
        found = session.execute(
            select(WebhookDelivery, Webhook)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.id == delivery_id)
        ).first()
    if found is None:
        return DeliveryOutcome("gone")
    delivery, hook = found
    if delivery.status in ("delivered", "failed"):
        return DeliveryOutcome("gone", delivery.attempts)
    if not hook.active:
        _settle(factory, delivery_id, "failed", None, "the webhook was deleted")
        return DeliveryOutcome("failed", delivery.attempts)
    box = SecretBox.from_settings(settings)
    secret = box.decrypt(hook.secret_ciphertext)
    # What the payload quotes (a job's error) was redacted when stored; again here, in
    # case a message slipped through in a form that was not recognised then.
    payload = redact_obj(delivery.payload, _endpoint_secrets(factory, box, hook, delivery))
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "modelcert-webhooks/1",
        "X-Modelcert-Event": delivery.event,
        "X-Modelcert-Delivery": str(delivery.id),
        SIGNATURE_HEADER: sign(secret, int(time.time()), body),
    }
    code: int | None = None
    error: str | None = None
    try:
        code = send(hook.url, body, headers, _policy(settings))
        if not 200 <= code < 300:
            error = f"the receiver answered HTTP {code}"
    except BlockedAddressError:
        _settle(factory, delivery_id, "failed", None, BLOCKED)
        return DeliveryOutcome("failed", delivery.attempts + 1)
    except DeliveryFailed:
        error = CONNECTION_FAILED
    if error is None:
        attempts = _settle(factory, delivery_id, "delivered", code, None)
        return DeliveryOutcome("delivered", attempts)
    give_up = delivery.attempts + 1 >= settings.webhook_max_attempts
    retry_in = None if give_up else retry_delay(settings, delivery.attempts + 1)
    attempts = _settle(
        factory, delivery_id, "failed" if give_up else "sending", code, error, retry_in=retry_in
    )
    if give_up:
        return DeliveryOutcome("failed", attempts)
    return DeliveryOutcome("retry", attempts, retry_in)


def _endpoint_secrets(
    factory: sessionmaker[Session], box: SecretBox, hook: Webhook, delivery: WebhookDelivery
) -> tuple[str, ...]:
    """The credential of the target the event is about, if it has one."""
    data = delivery.payload.get("data") if isinstance(delivery.payload, dict) else None
    target_id = data.get("target_id") if isinstance(data, dict) else None
    try:
        parsed = uuid.UUID(str(target_id))
    except ValueError:
        return ()
    with factory() as session:
        ciphertext = session.scalar(
            select(Secret.ciphertext)
            .join(Target, Target.secret_id == Secret.id)
            .where(Target.id == parsed, Target.organization_id == hook.organization_id)
        )
    if ciphertext is None:
        return ()
    try:
        return (box.decrypt(ciphertext),)
    except (RuntimeError, ValueError):
        return ()  # a key no longer configured: the stored redaction stands


def _settle(
    factory: sessionmaker[Session],
    delivery_id: uuid.UUID,
    status: str,
    code: int | None,
    error: str | None,
    retry_in: float | None = None,
) -> int:
    with transaction(factory) as session:
        attempts = session.scalar(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(
                status=status,
                attempts=WebhookDelivery.attempts + 1,
                last_status_code=code,
                last_error=error,
                delivered_at=func.now() if status == "delivered" else None,
                next_attempt_at=func.now() + timedelta(seconds=retry_in)
                if retry_in is not None
                else None,
            )
            .returning(WebhookDelivery.attempts)
        )
    return int(attempts or 0)


def retry_window(settings: Settings, attempts: int) -> float:
    """The longest wait after `attempts` failed attempts: base, 2×base, 4×base … capped at an
    hour."""
    return min(3600.0, float(settings.webhook_backoff_seconds * 2 ** max(0, attempts - 1)))


def retry_delay(settings: Settings, attempts: int) -> float:
    """Exponential backoff with full jitter, like the job retries (run.backoff_seconds): a
    receiver that was down for everyone is not hit by every delivery in the same second."""
    return random.uniform(0, retry_window(settings, attempts))
