"""Endpoint credentials encrypted at rest with Fernet (AES-128-CBC + HMAC), key rotation by list."""

from __future__ import annotations

import uuid

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.models import Secret
from app.schemas.resources import SecretCreate, SecretView
from app.services.auth import Principal
from app.services.errors import Conflict, NotFound
from app.services.pagination import page


class SecretBox:
    """MODELCERT_SECRET_KEY holds one or more comma-separated Fernet keys, newest first."""

    def __init__(self, keys: list[str]) -> None:
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        if settings.modelcert_secret_key is None:
            raise RuntimeError("MODELCERT_SECRET_KEY is not set")
        keys = [k.strip() for k in settings.modelcert_secret_key.get_secret_value().split(",")]
        return cls([k for k in keys if k])

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, ciphertext: bytes) -> str:
        try:
            return self._fernet.decrypt(ciphertext).decode()
        except InvalidToken:
            raise RuntimeError("the secret cannot be decrypted with MODELCERT_SECRET_KEY") from None

    def rotate(self, ciphertext: bytes) -> bytes:
        try:
            return self._fernet.rotate(ciphertext)
        except InvalidToken:
            raise RuntimeError(
                "a secret cannot be decrypted with any key in "
                "MODELCERT_SECRET_KEY; keep the old key listed until "
                "rotation is done"
            ) from None


def box_for(settings: Settings) -> SecretBox:
    return SecretBox.from_settings(settings)


def to_view(row: Secret) -> SecretView:
    return SecretView(
        id=row.id, name=row.name, created_at=row.created_at, rotated_at=row.rotated_at
    )


def create_secret(
    session: Session, box: SecretBox, who: Principal, body: SecretCreate
) -> SecretView:
    row = Secret(
        organization_id=who.organization_id,
        name=body.name,
        ciphertext=box.encrypt(body.value.get_secret_value()),
    )
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"a secret named {body.name!r} already exists") from None
    return to_view(row)


def _owned(session: Session, who: Principal, secret_id: uuid.UUID) -> Secret:
    row = session.scalar(
        select(Secret).where(Secret.id == secret_id, Secret.organization_id == who.organization_id)
    )
    if row is None:
        raise NotFound("no such secret")
    return row


def get_secret(session: Session, who: Principal, secret_id: uuid.UUID) -> SecretView:
    return to_view(_owned(session, who, secret_id))


def delete_secret(session: Session, who: Principal, secret_id: uuid.UUID) -> None:
    """Targets that used it keep running without a credential (secret_id SET NULL)."""
    session.delete(_owned(session, who, secret_id))


def list_secrets(
    session: Session, who: Principal, cursor: str | None, limit: int
) -> tuple[list[SecretView], str | None]:
    query = select(Secret).where(Secret.organization_id == who.organization_id)
    rows, next_cursor = page(session, query, Secret, cursor, limit)
    return [to_view(r) for r in rows], next_cursor


def rotate_all(factory: sessionmaker[Session], box: SecretBox, batch: int = 200) -> int:
    """Re-encrypt every secret with the newest key (MultiFernet.rotate); returns the count.

    Each batch commits on its own, so a large table never holds one long transaction, and
    a re-run after an interruption is harmless (rotating twice is still the newest key).
    """
    done = 0
    last: uuid.UUID | None = None
    while True:
        with factory() as session, session.begin():
            query = select(Secret).order_by(Secret.id).limit(batch).with_for_update()
            if last is not None:
                query = query.where(Secret.id > last)
            rows = session.scalars(query).all()
            for row in rows:
                row.ciphertext = box.rotate(row.ciphertext)
                row.rotated_at = func.now()
            done += len(rows)
        if len(rows) < batch:
            return done
        last = rows[-1].id
