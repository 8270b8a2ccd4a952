"""The certificates repository: every statement about a certificate, those that join it to
the job it certifies included (issued with the job's end, superseded, current, expiring, the
judges a successor keeps). What a certificate says and how it is signed are the services'
(app/services/certificates.py); this module only reads and writes rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    CTE,
    BindParameter,
    Boolean,
    ColumnElement,
    CursorResult,
    FromClause,
    Row,
    Select,
    String,
    and_,
    bindparam,
    exists,
    func,
    insert,
    not_,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session

from app.db.base import NO_ROW, ahead, table_of
from app.db.models import Certificate, Certification, Target

_CERTS = table_of(Certificate)
_JOBS = table_of(Certification)


def valid_now(now: datetime | BindParameter[datetime] | None = None) -> ColumnElement[bool]:
    """A certificate that counts: certified, not revoked, not superseded, not expired. The
    first three are ix_certificates_current's predicate, without parameters, so even a
    prepared (generic) plan can use that index."""
    moment = now if now is not None else func.now()
    return and_(
        _CERTS.c.certified,
        _CERTS.c.superseded_at.is_(None),
        _CERTS.c.revoked_at.is_(None),
        _CERTS.c.valid_until > moment,
    )


def _same_region(region: str | BindParameter[str] | None) -> ColumnElement[bool]:
    return _JOBS.c.region.is_not_distinct_from(region)


# The parts of the certificate's statements (built once: see jobs.py).
_NOW = bindparam("now", type_=_CERTS.c.issued_at.type)
_VALID = valid_now(_NOW)
# (Not named after a column: SQLAlchemy would take such a parameter as a value to SET in
# the UPDATEs of a statement that runs them as CTEs.)
_REGION = bindparam("subject_region", type_=String)
_SAME_REGION = _same_region(_REGION)
_FINGERPRINT = bindparam("fingerprint", type_=String)
_COMPARE = bindparam("compare", type_=Boolean)  # a model listing was seen: fingerprints count
_ITS_FINGERPRINT = _CERTS.c.payload["endpoint_fingerprint"].astext
_OF_TARGET = _CERTS.c.target_id == bindparam("of_target")


def _stale_ids(jobs: FromClause) -> Select[Any]:
    """Current certificates of the target and region seen with another fingerprint."""
    return (
        select(_CERTS.c.id)
        .join(jobs, jobs.c.id == _CERTS.c.certification_id)
        .where(
            _OF_TARGET,
            jobs.c.region.is_not_distinct_from(_REGION),
            _VALID,
            _ITS_FINGERPRINT != _FINGERPRINT,
        )
    )


# Those superseded, returned with their suite (to be certified again).
_STALE = (
    update(_CERTS)
    .where(_COMPARE, _CERTS.c.id.in_(_stale_ids(_JOBS)))
    .values(superseded_at=_NOW)
    .returning(_CERTS.c.id, _CERTS.c.payload["suite"]["name"].astext.label("suite"))
    .cte("stale")
)
# Whether _STALE would take any, for a statement that updates the job's own row (over an
# alias of the jobs' table: a subquery over it would otherwise correlate to that row).
STALE_EXIST = and_(_COMPARE, exists(_stale_ids(_JOBS.alias("certified_job")).correlate(None)))


def issuing(gate: ColumnElement[bool] | None = None) -> tuple[CTE, ...]:
    """The certificate's writes as CTEs, each only where `gate` holds: the current certificate
    of the job's target, region and suite superseded by this one (those _STALE takes
    are left to it: one statement must not update a row twice), the certificate itself (its
    job's row supplies the ids: a job that is not there, as in compile_ahead's run, inserts
    nothing), and the target's endpoint fingerprint moved to the one seen."""

    def gated(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
        return and_(*conditions) if gate is None else and_(gate, *conditions)

    superseded = (
        update(_CERTS)
        .where(
            gated(
                _OF_TARGET,
                _VALID,
                or_(not_(_COMPARE), (_ITS_FINGERPRINT != _FINGERPRINT).is_not(true())),
                _CERTS.c.certification_id.in_(
                    select(_JOBS.c.id).where(
                        _JOBS.c.target_id == bindparam("of_target"),
                        _SAME_REGION,
                        _JOBS.c.suite_name == bindparam("subject_suite"),
                    )
                ),
            )
        )
        .values(superseded_at=_NOW)
        .returning(_CERTS.c.id)
        .cte("superseded")
    )
    issued = (
        insert(_CERTS)
        .from_select(
            [
                "id",
                "certification_id",
                "target_id",
                "organization_id",
                "payload",
                "signature",
                "key_id",
                "issued_at",
                "valid_until",
                "certified",
            ],
            select(
                bindparam("certificate_id", type_=_CERTS.c.id.type),
                _JOBS.c.id,
                _JOBS.c.target_id,
                _JOBS.c.organization_id,
                bindparam("new_payload", type_=_CERTS.c.payload.type),
                bindparam("new_signature", type_=String),
                bindparam("new_key_id", type_=String),
                _NOW,
                bindparam("certificate_valid_until", type_=_CERTS.c.valid_until.type),
                bindparam("is_certified", type_=Boolean),
            ).where(gated(_JOBS.c.id == bindparam("job_id"))),
        )
        .returning(_CERTS.c.id)
        .cte("issued")
    )
    targets = table_of(Target)
    moved = (
        update(targets)
        .where(
            gated(
                targets.c.id == bindparam("of_target"),
                _COMPARE,
                targets.c.endpoint_fingerprint.is_distinct_from(_FINGERPRINT),
            )
        )
        .values(endpoint_fingerprint=_FINGERPRINT)
        .returning(targets.c.id)
        .cte("moved")
    )
    return superseded, issued, moved


# The certificate's writes, one statement built once (see jobs.py: built per call a statement
# costs more CPU than its round trip): its data-modifying CTEs run once each, whether or not
# the final SELECT reads them, and see the same snapshot (none sees another's changes).
# The parameters under which `issuing` writes nothing (a warm-up's run: see compile_ahead).
ISSUING_NO_ROW: dict[str, Any] = {
    "of_target": NO_ROW,
    "subject_region": None,
    "now": datetime(2000, 1, 1, tzinfo=UTC),
    "fingerprint": "",
    "compare": False,
    "is_certified": False,
    "subject_suite": "",
    "certificate_id": NO_ROW,
    "new_payload": {},
    "new_signature": "",
    "new_key_id": "",
    "certificate_valid_until": None,
}
ISSUE = ahead(
    select(_STALE.c.id, _STALE.c.suite).add_cte(*issuing()),
    job_id=NO_ROW,
    **ISSUING_NO_ROW,
)


def issue(session: Session, params: dict[str, object]) -> Sequence[Row[Any, Any]]:
    """Store a signed certificate with `issuing`'s writes (in the caller's transaction, after
    its job's terminal statement). Returns the certificates another endpoint fingerprint
    superseded, each with its suite (id, suite), for the caller to certify again."""
    return session.execute(ISSUE, params).all()


def supersede_all(session: Session, target_id: uuid.UUID) -> int:
    """Mark every certificate of the target not yet superseded (or revoked) as superseded;
    how many."""
    statement = (
        update(Certificate)
        .where(
            Certificate.target_id == target_id,
            Certificate.superseded_at.is_(None),
            Certificate.revoked_at.is_(None),
        )
        .values(superseded_at=func.now())
    )
    # An UPDATE's result is a CursorResult (it has a rowcount); Session.execute says Result.
    result = cast(CursorResult[Any], session.execute(statement))
    return int(result.rowcount or 0)


def judges_of(session: Session, certificate_id: uuid.UUID) -> dict[str, str]:
    """The judge bindings of the job a certificate was issued for (kept by its successor)."""
    judges = session.scalar(
        select(Certification.judges)
        .join(Certificate, Certificate.certification_id == Certification.id)
        .where(Certificate.id == certificate_id)
    )
    return dict(judges or {})


def for_certification(
    session: Session, org_id: uuid.UUID, cert_id: uuid.UUID
) -> Certificate | None:
    """The organization's certificate of one certification, if it was issued."""
    return session.scalar(
        select(Certificate).where(
            Certificate.certification_id == cert_id, Certificate.organization_id == org_id
        )
    )


def newest_unrevoked(
    session: Session,
    target_id: uuid.UUID,
    *,
    region: str | None = None,
    any_region: bool = True,
    suite: str | None = None,
    limit: int,
) -> list[Certificate]:
    """Up to `limit` of the target's certificates that are not revoked (of one region unless
    `any_region`, of one suite if named), newest first. Within one second (issued_at's
    precision) the one still standing comes first: it superseded the other."""
    stmt = (
        select(Certificate)
        .join(Certification, Certification.id == Certificate.certification_id)
        .where(Certificate.target_id == target_id, Certificate.revoked_at.is_(None))
    )
    if not any_region:
        stmt = stmt.where(_same_region(region))
    if suite is not None:
        stmt = stmt.where(Certification.suite_name == suite)
    return list(
        session.scalars(
            stmt.order_by(
                Certificate.issued_at.desc(),
                Certificate.superseded_at.is_(None).desc(),
                Certificate.id.desc(),
            ).limit(limit)
        )
    )


def newest_in_force(
    session: Session, target_id: uuid.UUID, suite: str | None = None
) -> Certificate | None:
    """The target's newest certificate in force (not revoked, superseded or expired),
    whatever its verdict, of one suite if named."""
    stmt = (
        select(Certificate)
        .join(Certification, Certification.id == Certificate.certification_id)
        .where(
            Certificate.target_id == target_id,
            Certificate.revoked_at.is_(None),
            Certificate.superseded_at.is_(None),
            Certificate.valid_until > func.now(),
        )
    )
    if suite is not None:
        stmt = stmt.where(Certification.suite_name == suite)
    # issued_at is to the second: the id decides between two of the same second.
    return session.scalar(
        stmt.order_by(Certificate.issued_at.desc(), Certificate.id.desc()).limit(1)
    )


def expiring(session: Session, batch: int = 500) -> list[tuple[Certificate, Certification, Target]]:
    """Certificates in force inside their live target's re-certification window, with their
    job and target, the soonest to expire first."""
    window = func.make_interval(0, 0, 0, Target.recertify_before_days)
    rows = session.execute(
        select(Certificate, Certification, Target)
        .join(Certification, Certification.id == Certificate.certification_id)
        .join(Target, Target.id == Certificate.target_id)
        .where(
            valid_now(),
            Target.deleted_at.is_(None),
            Target.recertify_before_days > 0,
            Certificate.valid_until <= func.now() + window,
        )
        .order_by(Certificate.valid_until)
        .limit(batch)
    ).all()
    return [(c, j, t) for c, j, t in rows]
