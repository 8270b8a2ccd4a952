"""Request and response models of report sharing and public badges (issue #24)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from app.schemas.resources import Strict


class ShareCreate(Strict):
    expires_in_hours: int = Field(
        168, ge=1, le=24 * 90, description="How long the link works: 1 hour to 90 days."
    )


class ShareView(BaseModel):
    id: uuid.UUID
    certification_id: uuid.UUID
    url: str = Field(
        description="The read-only report, for anyone holding the link: signed, no token in "
        "it; it stops working when it expires or is revoked."
    )
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    status: str = Field(description="active, expired or revoked")


class ShareList(BaseModel):
    items: list[ShareView]


class SharePath(BaseModel):
    certification_id: str
    share_id: str


class BadgeUpdate(Strict):
    public: bool = Field(
        description="Whether /badges/{target_id}.svg and its verify page answer anyone."
    )


class BadgeView(BaseModel):
    target_id: uuid.UUID
    public: bool
    svg_url: str = Field(description="The badge: add ?suite=NAME for one suite's verdict.")
    page_url: str = Field(description="The public page the badge links to: the verdict, verified.")
    markdown: str
