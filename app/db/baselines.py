"""The statements about a job's baseline: what its regressions are judged against, and what
they found (app/services/baselines.py turns them into the engine's Baseline and the views).

The baseline of a job is the target's last *certified* certification (verdict certified or
certified_with_warnings, certificate not revoked; superseded or expired ones count: the last
certified state is what a drop is measured from) of the same suite name, version and
content hash, in the same region, issued before the job was created. Created, not started:
every delivery of a job finds the same baseline, so its checks are all judged against one.
The comparison itself is the engine's (app/certification/regressions.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import CTE, Connection, Label, Row, Select, bindparam, func, select
from sqlalchemy.orm import Session

from app.db.base import table_of
from app.db.models import Certificate, Certification, CheckResultRow

_CERTS, _JOBS, _CHECKS = table_of(Certificate), table_of(Certification), table_of(CheckResultRow)
_BASE = _JOBS.alias("baseline_job")  # the baseline's certification


def _last_certified(job: Any, created_at: Any) -> Select[Any]:
    """The baseline's certificate and certification (at most one row) of the job whose
    columns `job` holds (id, target_id, suite_name, suite_version, suite_hash, region)."""
    return (
        select(
            _CERTS.c.certification_id,
            _CERTS.c.issued_at,
            _BASE.c.suite_name,
            _BASE.c.suite_version,
        )
        .join(_BASE, _BASE.c.id == _CERTS.c.certification_id)
        .where(
            _CERTS.c.target_id == job.target_id,
            _BASE.c.suite_name == job.suite_name,
            _BASE.c.suite_version == job.suite_version,
            _BASE.c.suite_hash == job.suite_hash,
            _BASE.c.region.is_not_distinct_from(job.region),
            _BASE.c.id != job.id,
            _CERTS.c.certified,  # as the partial indexes spell it (IS TRUE would not use them)
            _CERTS.c.revoked_at.is_(None),
            _CERTS.c.issued_at < created_at,
        )
        .order_by(_CERTS.c.issued_at.desc(), _CERTS.c.id.desc())
        .limit(1)
    )


def _checks_json(certification_id: Any) -> Any:
    """A certification's stored check results as a JSON array (name, passed, failed, details)."""
    return (
        select(
            func.json_agg(
                func.json_build_object(
                    "check_name",
                    _CHECKS.c.check_name,
                    "passed",
                    _CHECKS.c.passed,
                    "failed",
                    _CHECKS.c.failed,
                    "details",
                    _CHECKS.c.details,
                )
            )
        )
        .where(_CHECKS.c.certification_id == certification_id)
        .scalar_subquery()
    )


def of_claimed(claimed: CTE) -> Label[Any]:
    """The claimed job's baseline as one JSON value (null: none), a column of the claim's own
    statement (jobs.claim_with_inputs): finding it costs no round trip of its own."""
    job = _JOBS.alias("claimed_job")
    created_at = select(job.c.created_at).where(job.c.id == claimed.c.id).scalar_subquery()
    last = _last_certified(claimed.c, created_at).subquery("last_certified")
    return (
        select(
            func.json_build_object(
                "certification_id",
                last.c.certification_id,
                "issued_at",
                last.c.issued_at,
                "suite_name",
                last.c.suite_name,
                "suite_version",
                last.c.suite_version,
                "checks",
                _checks_json(last.c.certification_id),
            )
        )
        .scalar_subquery()
        .label("baseline")
    )


_JOB = _JOBS.alias("job")
_FOR_JOB = _last_certified(_JOB.c, _JOB.c.created_at).where(_JOB.c.id == bindparam("job_id"))
_FOR_JOB = _FOR_JOB.add_columns(_checks_json(_CERTS.c.certification_id).label("checks"))


def baseline_row(conn: Connection | Session, job_id: uuid.UUID) -> Row[Any] | None:
    """The job's baseline (certification_id, issued_at, suite_name, suite_version, checks),
    None for a first one."""
    return conn.execute(_FOR_JOB, {"job_id": job_id}).first()


# What a finished certification found --------------------------------------------------------


def records(details_by_check: Iterable[tuple[str, Mapping[str, Any] | None]]) -> dict[str, Any]:
    """From (check name, details) of a certification's stored results: its baseline's id
    (None when it had none, or ran before regressions were judged) and its regressed checks."""
    baseline: str | None = None
    regressed: list[dict[str, Any]] = []
    for name, details in details_by_check:
        record = (details or {}).get("regression")
        if not isinstance(record, Mapping):
            continue
        baseline = baseline or record.get("baseline")
        if record.get("regressed"):
            regressed.append({"check": name, **record})
    return {"baseline": baseline, "regressed": regressed}


def found(session: Session | Connection, cert_id: uuid.UUID) -> dict[str, Any]:
    """`records` of a certification's stored results (a webhook's `regressions`)."""
    rows = session.execute(
        select(_CHECKS.c.check_name, _CHECKS.c.details)
        .where(_CHECKS.c.certification_id == cert_id)
        .order_by(_CHECKS.c.created_at, _CHECKS.c.check_name)
    )
    return records((r.check_name, r.details) for r in rows)


def reference_row(session: Session, cert_id: uuid.UUID) -> Row[Any] | None:
    """A baseline certification's certificate time and verdict, with its suite."""
    return session.execute(
        select(_CERTS.c.issued_at, _CERTS.c.payload["verdict"].astext.label("verdict"))
        .add_columns(_JOBS.c.suite_name, _JOBS.c.suite_version)
        .join(_JOBS, _JOBS.c.id == _CERTS.c.certification_id)
        .where(_CERTS.c.certification_id == cert_id)
    ).first()
