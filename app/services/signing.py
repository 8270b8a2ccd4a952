"""Signing keys: MODELCERT_SIGNING_KEY (newest first) or, in development, a generated key file.

Only the worker signs, so only the worker loads a private key. It registers every
configured public key in `signing_keys` before it signs, so that certificates signed before
a rotation keep verifying against `GET /v1/signing-keys`, which the API serves from that
table without a key of its own.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from app.certification import certificates as certs
from app.config import ConfigError, Settings
from app.db.models import SigningKey
from app.db.session import transaction

KEY_FILE = "signing.key"


@dataclass(frozen=True)
class Signer:
    """The newest key signs; the older ones are still published."""

    private_key: Ed25519PrivateKey
    key_id: str
    public_keys: tuple[str, ...]  # base64, newest first; [0] is the signer's

    def sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        return certs.sign(payload, self.private_key, self.key_id)


def dev_key_file(data_dir: Path) -> str:
    """The development seed, shared by the workers; created once (0600), atomically, and
    read once per process (it never changes: a job's certificate costs no file read, nor the
    path's resolution, a system call per directory on every job's signature). A relative
    directory is taken from the current one, as it always was."""
    data_dir = Path(data_dir)
    return _dev_key_file_in(data_dir if data_dir.is_absolute() else Path.cwd() / data_dir)


@lru_cache(maxsize=8)
def _dev_key_file_in(data_dir: Path) -> str:
    return _dev_key_file(data_dir.resolve())


@lru_cache(maxsize=8)
def _dev_key_file(data_dir: Path) -> str:
    path = data_dir / KEY_FILE
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".signing-")  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(certs.generate_seed() + "\n")
        try:
            os.link(tmp, path)  # fails if another process won the race: use its key
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
    return path.read_text().strip()


def seeds_for(settings: Settings) -> list[str]:
    if settings.modelcert_signing_key is not None:
        seeds = [s.strip() for s in settings.modelcert_signing_key.get_secret_value().split(",")]
        if any(seeds):
            return [s for s in seeds if s]
    if settings.modelcert_env == "production":
        raise ConfigError("MODELCERT_SIGNING_KEY is required when MODELCERT_ENV=production")
    return [dev_key_file(settings.modelcert_data_dir)]


@lru_cache(maxsize=8)
def signer_from(seeds: tuple[str, ...]) -> Signer:
    """The signer of these seeds (the first signs; all are published), made once per process."""
    keys = [certs.load_private_key(seed) for seed in seeds]
    public = tuple(certs.public_key_b64(k) for k in keys)
    return Signer(keys[0], certs.key_id_for(public[0]), public)


def signer_for(settings: Settings) -> Signer:
    return signer_from(tuple(seeds_for(settings)))


# Key sets this process saw fully registered: keys are never deleted and a retirement is
# never undone, so once seen committed, the steady state needs no further read.
_REGISTERED: set[tuple[str, ...]] = set()


def ensure_registered(factory: sessionmaker[Session], signer: Signer) -> None:
    """Register the signer's keys in a transaction of their own, unless this process saw
    them registered: a certificate written without a transaction around it (conclude.py)
    needs its key there first."""
    if signer.public_keys in _REGISTERED:
        return
    with transaction(factory) as session:
        register_keys(session, signer)
    _REGISTERED.add(signer.public_keys)  # committed


def register_keys(session: Session, signer: Signer) -> None:
    """Idempotent: insert every configured key; keys listed after the newest are retired.

    Reads first (once per process and key set), so the steady state writes nothing.
    """
    if signer.public_keys in _REGISTERED:
        return
    rows = [{"key_id": certs.key_id_for(k), "public_key": k} for k in signer.public_keys]
    known = dict(
        session.execute(
            select(SigningKey.key_id, SigningKey.retired_at).where(
                SigningKey.key_id.in_([r["key_id"] for r in rows])
            )
        )
        .tuples()
        .all()
    )
    older = [row["key_id"] for row in rows[1:]]
    if len(known) == len(rows) and all(known[k] is not None for k in older):
        _REGISTERED.add(signer.public_keys)
        return
    session.execute(
        insert(SigningKey).values(rows).on_conflict_do_nothing(index_elements=["key_id"])
    )
    if older:
        session.execute(
            update(SigningKey)
            .where(SigningKey.key_id.in_(older), SigningKey.retired_at.is_(None))
            .values(retired_at=func.now())
        )


def published_keys(session: Session) -> list[SigningKey]:
    return list(
        session.scalars(select(SigningKey).order_by(SigningKey.created_at, SigningKey.key_id))
    )
