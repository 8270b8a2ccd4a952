"""Who may read a report besides its organization's tokens: browser sessions (a signed
cookie naming a token), read-only share links (signed, expiring, revocable) and public
badges. Signatures are HMAC-SHA256 under a key derived from MODELCERT_SECRET_KEY (its
newest key signs, any of its keys verifies, so rotating it keeps links working)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import certificates as certificate_rows
from app.db import jobs
from app.db.models import (
    ApiToken,
    Organization,
    ReportShare,
    Target,
    TargetBadge,
)
from app.schemas.reports import BadgeView, ShareView
from app.services.auth import Principal
from app.services.certificates import current_for_target
from app.services.errors import NotFound
from app.services.targets import load_target

SESSION_SECONDS = 8 * 3600


def _keys(settings: Settings, purpose: str) -> list[bytes]:
    secret = settings.modelcert_secret_key
    if secret is None:
        raise RuntimeError("MODELCERT_SECRET_KEY is required to sign sessions and links")
    return [
        hashlib.sha256(f"modelcert {purpose}\0{key.strip()}".encode()).digest()
        for key in secret.get_secret_value().split(",")
        if key.strip()
    ]


def _mac(key: bytes, message: str) -> str:
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(settings: Settings, purpose: str, message: str) -> str:
    return _mac(_keys(settings, purpose)[0], message)


def signed_by_us(settings: Settings, purpose: str, message: str, mac: str) -> bool:
    return any(hmac.compare_digest(_mac(k, message), mac) for k in _keys(settings, purpose))


# Browser sessions -------------------------------------------------------------------------


@dataclass(frozen=True)
class BrowserSession:
    session_id: str
    token_id: uuid.UUID
    expires: int  # unix time


def new_session_cookie(settings: Settings, who: Principal) -> tuple[str, BrowserSession]:
    """The cookie value: which token logged in, until when, and a random id (to end it on
    logout), signed. The token itself never goes into the cookie."""
    session = BrowserSession(
        secrets.token_urlsafe(16), who.token_id, int(time.time()) + SESSION_SECONDS
    )
    message = f"{session.session_id}.{session.token_id}.{session.expires}"
    return f"{message}.{sign(settings, 'session', message)}", session


def read_session_cookie(settings: Settings, value: str) -> BrowserSession | None:
    parts = value.split(".")
    if len(parts) != 4 or len(value) > 300:
        return None
    session_id, token_id, expires, mac = parts
    if not signed_by_us(settings, "session", f"{session_id}.{token_id}.{expires}", mac):
        return None
    try:
        session = BrowserSession(session_id, uuid.UUID(token_id), int(expires))
    except ValueError:
        return None
    return session if session.expires > time.time() else None


def principal_of_token(session: Session, token_id: uuid.UUID) -> Principal | None:
    """The principal of a session's token while the token is not revoked."""
    row = session.execute(
        select(ApiToken.id, ApiToken.organization_id, Organization.name)
        .join(Organization, Organization.id == ApiToken.organization_id)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
    ).first()
    return None if row is None else Principal(row.organization_id, row.name, row.id)


# Share links ------------------------------------------------------------------------------


def share_token(settings: Settings, share_id: uuid.UUID) -> str:
    """What a share link carries: the share's id and its signature (no API token)."""
    return f"{share_id.hex}.{sign(settings, 'share', share_id.hex)}"


def share_status(row: ReportShare, now: datetime | None = None) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at <= (now or datetime.now(UTC)):
        return "expired"
    return "active"


def share_view(settings: Settings, row: ReportShare, base_url: str) -> ShareView:
    return ShareView(
        id=row.id,
        certification_id=row.certification_id,
        url=f"{base_url}/shared/{share_token(settings, row.id)}",
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        status=share_status(row),
    )


def _own_certification(session: Session, who: Principal, cert_id: uuid.UUID) -> None:
    if not jobs.exists_for(session, who.organization_id, cert_id):
        raise NotFound("no such certification")


def create_share(
    session: Session,
    settings: Settings,
    who: Principal,
    cert_id: uuid.UUID,
    hours: int,
    base_url: str,
) -> ShareView:
    _own_certification(session, who, cert_id)
    now = datetime.now(UTC)
    row = ReportShare(
        organization_id=who.organization_id,
        certification_id=cert_id,
        created_by_token_id=who.token_id,
        created_at=now,
        expires_at=now + timedelta(hours=hours),
    )
    session.add(row)
    session.flush()
    return share_view(settings, row, base_url)


def list_shares(
    session: Session, settings: Settings, who: Principal, cert_id: uuid.UUID, base_url: str
) -> list[ShareView]:
    _own_certification(session, who, cert_id)
    rows = session.scalars(
        select(ReportShare)
        .where(
            ReportShare.certification_id == cert_id,
            ReportShare.organization_id == who.organization_id,
        )
        .order_by(ReportShare.created_at.desc(), ReportShare.id.desc())
    )
    return [share_view(settings, r, base_url) for r in rows]


def revoke_share(session: Session, who: Principal, cert_id: uuid.UUID, share_id: uuid.UUID) -> None:
    row = session.scalar(
        select(ReportShare).where(
            ReportShare.id == share_id,
            ReportShare.certification_id == cert_id,
            ReportShare.organization_id == who.organization_id,
        )
    )
    if row is None:
        raise NotFound("no such share link")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)


class ShareGone(Exception):
    """A genuine link that no longer works: `status` says why (expired, revoked)."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


def resolve_share(session: Session, settings: Settings, token: str) -> ReportShare:
    """The share a link names, if it is ours and still works (NotFound, ShareGone)."""
    share_hex, _, mac = token.partition(".")
    if len(share_hex) != 32 or not signed_by_us(settings, "share", share_hex, mac):
        raise NotFound("no such link")
    try:
        share_id = uuid.UUID(hex=share_hex)
    except ValueError:
        raise NotFound("no such link") from None
    row = session.get(ReportShare, share_id)
    if row is None:
        raise NotFound("no such link")
    status = share_status(row)
    if status != "active":
        raise ShareGone(status)
    return row


# Public badges ----------------------------------------------------------------------------


def badge_view(target_id: uuid.UUID, public: bool, base_url: str) -> BadgeView:
    svg = f"{base_url}/badges/{target_id}.svg"
    page = f"{base_url}/badges/{target_id}"
    return BadgeView(
        target_id=target_id,
        public=public,
        svg_url=svg,
        page_url=page,
        markdown=f"[![modelcert]({svg})]({page})",
    )


def get_badge(session: Session, who: Principal, target_id: uuid.UUID, base_url: str) -> BadgeView:
    target = load_target(session, who, target_id)
    public = session.scalar(select(TargetBadge.public).where(TargetBadge.target_id == target.id))
    return badge_view(target.id, bool(public), base_url)


def set_badge(
    session: Session, who: Principal, target_id: uuid.UUID, public: bool, base_url: str
) -> BadgeView:
    target = load_target(session, who, target_id)
    session.execute(
        insert(TargetBadge)
        .values(target_id=target.id, organization_id=target.organization_id, public=public)
        .on_conflict_do_update(
            index_elements=[TargetBadge.target_id],
            set_={"public": public, "updated_at": datetime.now(UTC)},
        )
    )
    return badge_view(target.id, public, base_url)


@dataclass(frozen=True)
class BadgeState:
    """What a public badge says, and nothing more: the verdict and until when."""

    state: str  # certified, certified_with_warnings, not_certified, inconclusive, none
    message: str
    valid_until: datetime | None
    certificate: dict[str, object] | None  # for the public verify page only


def public_badge(session: Session, target_id: uuid.UUID, suite: str | None) -> BadgeState:
    """NotFound unless the target exists, is live, and its organization made its badge public."""
    target = session.scalar(
        select(Target)
        .join(TargetBadge, TargetBadge.target_id == Target.id)
        .where(Target.id == target_id, Target.deleted_at.is_(None), TargetBadge.public)
    )
    if target is None:
        raise NotFound("no public badge for this target")
    row, _why = current_for_target(session, target.id, None, any_region=True, suite=suite)
    if row is None:  # none certified in force: the newest one in force says why
        row = certificate_rows.newest_in_force(session, target.id, suite)
    if row is None:
        return BadgeState("none", "no current certificate", None, None)
    verdict = str(row.payload.get("verdict"))
    until = row.valid_until.strftime("%Y-%m-%d")
    words = verdict.replace("_", " ")
    return BadgeState(
        verdict,
        f"{words} · until {until}",
        row.valid_until,
        {"payload": row.payload, "signature": row.signature},
    )
