"""Request and response models of the operations resources (dead letters, webhooks)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.schemas.resources import EndpointUrl, Strict

EventName = Literal[
    "certification.succeeded",
    "certification.failed",
    "certification.timed_out",
    "certification.cancelled",
    "dead_letter.created",
]


class DeadLetterView(BaseModel):
    id: uuid.UUID
    certification_id: uuid.UUID
    cause: str
    last_error: str | None
    attempts: int
    created_at: datetime
    replayed_at: datetime | None


class DeadLetterList(BaseModel):
    items: list[DeadLetterView]
    next_cursor: str | None = None


class ReplayView(BaseModel):
    dead_letter_id: uuid.UUID
    certification_id: uuid.UUID
    status: str


class WebhookCreate(Strict):
    url: EndpointUrl
    events: list[EventName] = Field(min_length=1, max_length=5)
    target_id: uuid.UUID | None = None


class WebhookView(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    target_id: uuid.UUID | None
    active: bool
    created_at: datetime


class WebhookCreated(WebhookView):
    secret: str = Field(description="The signing secret; shown once, store it now.")


class WebhookList(BaseModel):
    items: list[WebhookView]
    next_cursor: str | None = None


class DeliveryView(BaseModel):
    id: uuid.UUID
    event_id: str
    event: str
    status: Literal["pending", "sending", "delivered", "failed"] | str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]


class DeliveryList(BaseModel):
    items: list[DeliveryView]
    next_cursor: str | None = None
