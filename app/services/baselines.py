"""What a certification's regressions are judged against, and what they found.

The baseline of a job is the target's last *certified* certification (verdict certified or
certified_with_warnings, certificate not revoked; superseded or expired ones count: the last
certified state is what a drop is measured from) of the same suite name, version and
content hash, in the same region, issued before the job was created. Created, not started:
every delivery of a job finds the same baseline, so its checks are all judged against one.
The comparison itself is the engine's (app/certification/regressions.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from app.certification.certificates import format_time
from app.certification.regressions import Baseline, figures_of
from app.db.baselines import baseline_row as _baseline_row
from app.db.baselines import found, records, reference_row

__all__ = ["for_job", "found", "from_claim", "records", "reference"]


def from_claim(value: Mapping[str, Any] | None) -> Baseline | None:
    """The Baseline of `of_claimed`'s JSON."""
    if not value:
        return None
    issued = value["issued_at"]
    moment = datetime.fromisoformat(issued) if isinstance(issued, str) else issued
    return Baseline(
        certification_id=str(value["certification_id"]),
        suite_ref=f"{value['suite_name']}@{value['suite_version']}",
        issued_at=format_time(moment),
        checks={
            str(c["check_name"]): figures_of(c)
            for c in value.get("checks") or []
            if isinstance(c, Mapping)
        },
    )


def for_job(conn: Connection | Session, job_id: uuid.UUID) -> Baseline | None:
    """A certification's baseline (see the module docstring); None for a first one."""
    row = _baseline_row(conn, job_id)
    return from_claim(row._asdict()) if row is not None else None


def reference(session: Session, cert_id: str | None) -> dict[str, Any] | None:
    """A baseline certification as a results view names it: id, suite, verdict, issued_at."""
    if cert_id is None:
        return None
    try:
        key = uuid.UUID(cert_id)
    except ValueError:
        return None
    row = reference_row(session, key)
    if row is None:
        return {"certification_id": cert_id, "suite": None, "verdict": None, "issued_at": None}
    return {
        "certification_id": cert_id,
        "suite": f"{row.suite_name}@{row.suite_version}",
        "verdict": row.verdict,
        "issued_at": format_time(row.issued_at),
    }
