"""Endpoint fingerprint: which endpoint a certification saw, from its stored evidence.

sha256 over canonical JSON of the provider, the normalised base URL, the declared model and
the sorted model listing that the connectivity check received. The listing comes from the
stored samples (so a resumed job fingerprints what its earlier attempt saw); it is the
excerpt the check keeps, at most the first 20 models of the listing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from app.certification.certificates import LISTING_SEPARATOR, endpoint_fingerprint
from app.db import jobs
from app.db.models import CheckResultRow


def compute(provider: str, base_url: str, model: str, listing: list[str] | None) -> str:
    return endpoint_fingerprint(provider, base_url, model, listing)


def model_listing(
    session: Session | None,
    cert_id: uuid.UUID,
    rows: Sequence[CheckResultRow | Any],
    stored: Mapping[str, Sequence[str]] | None = None,
) -> list[str] | None:
    """The models the connectivity check saw (None when it did not run or never got one).
    `rows`: the job's check results, read in the caller's transaction; `stored`: each check's
    excerpts of samples answered with 200, as the caller stored them (else they are read in
    `session`)."""
    names = [r.check_name for r in rows if (r.details or {}).get("check") == "connectivity"]
    if not names:
        return None
    if stored is not None:
        excerpts = [e for name in names for e in stored.get(name, ())]
    elif session is not None:
        excerpts = jobs.answered_excerpts(session, cert_id, names)
    else:
        raise ValueError("model_listing needs the stored excerpts or a session to read them")
    if not excerpts:
        return None
    models: set[str] = set()
    for excerpt in excerpts:
        models.update(m for m in (excerpt or "").split(LISTING_SEPARATOR) if m)
    return sorted(models)
