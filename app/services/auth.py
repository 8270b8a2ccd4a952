"""API tokens: random, shown once, stored as SHA-256; each belongs to one organization."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from app.db.base import table_of
from app.db.models import ApiToken, Organization

TOKEN_PREFIX = "mc_"
LAST_USED_RESOLUTION = 60  # seconds


@dataclass(frozen=True)
class Principal:
    organization_id: uuid.UUID
    organization: str
    token_id: uuid.UUID


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def get_or_create_organization(session: Session, name: str) -> Organization:
    org = session.scalar(select(Organization).where(Organization.name == name))
    if org is None:
        org = Organization(name=name)
        session.add(org)
        session.flush()
    return org


def create_token(
    session: Session, organization: str, name: str = "default"
) -> tuple[str, Principal]:
    org = get_or_create_organization(session, organization)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(organization_id=org.id, name=name, token_hash=hash_token(token),
                   prefix=token[:10])
    session.add(row)
    session.flush()
    return token, Principal(org.id, org.name, row.id)


_TOKENS, _ORGS = table_of(ApiToken), table_of(Organization)
_STALE = or_(_TOKENS.c.last_used_at.is_(None),
             _TOKENS.c.last_used_at < func.now() - timedelta(seconds=LAST_USED_RESOLUTION))
# Built once: every request runs it (see app/db/base.py table_of).
_AUTHENTICATE = (
    select(_TOKENS.c.id, _TOKENS.c.organization_id, _ORGS.c.name, _STALE.label("stale"))
    .select_from(_TOKENS.join(_ORGS, _ORGS.c.id == _TOKENS.c.organization_id))
    .where(_TOKENS.c.token_hash == bindparam("token_hash"), _TOKENS.c.revoked_at.is_(None)))
_TOUCH = (update(_TOKENS).where(_TOKENS.c.id == bindparam("token_id"), _STALE)
          .values(last_used_at=func.now()))


def authenticate(session: Session, token: str) -> Principal | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = session.execute(_AUTHENTICATE, {"token_hash": hash_token(token)}).first()
    if row is None:
        return None
    # last_used_at is informational: written at most once a minute, so concurrent requests with
    # one token do not queue on that row's lock and commit a write each (bench api_create);
    # the UPDATE is only sent when the SELECT saw it stale (and re-checks that, for races).
    if row.stale:
        session.execute(_TOUCH, {"token_id": row.id})
    return Principal(row.organization_id, row.name, row.id)
