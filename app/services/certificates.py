"""Certificates: issued with the terminal status, read back, and what "current" means.

Every succeeded certification gets a signed certificate, whatever its verdict (a signed
`not_certified` is still a statement). A newer certificate for the same target, region and
suite supersedes the older one whatever its verdict: a `not_certified` run ends the
standing of the `certified` one before it. A changed endpoint fingerprint supersedes the
target's current certificates in that region and queues a new certification.

A target's current certificate is per suite: the newest certificate of that suite, when it
is not revoked, superseded or expired, and counts when its verdict is `certified` or
`certified_with_warnings`. Asked without a suite, the answer is the strongest suite's (the
one whose covered checks include the others', suites.Suite.covers): a weaker suite's newer
certificate never stands in for a stronger suite's verdict.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from app.certification import certificates as certs
from app.certification.results import CheckResult, Verdict
from app.config import Settings
from app.db import certificates as certificate_rows
from app.db.models import Certificate, CheckResultRow, Target
from app.schemas.results import CertificateView, SigningKeyList, SigningKeyView
from app.services import fingerprint
from app.services.auth import Principal
from app.services.certifications import load_certification
from app.services.enqueue import Queued, enqueue
from app.services.errors import NotFound
from app.services.signing import Signer, published_keys, register_keys
from app.services.targets import load_target

CERTIFIED = (Verdict.CERTIFIED.value, Verdict.CERTIFIED_WITH_WARNINGS.value)
FINGERPRINT_CHANGE = "fingerprint_change"


def as_result(row: CheckResultRow | Row[Any]) -> CheckResult:
    return CheckResult(
        name=row.check_name,
        outcome=row.outcome,
        required=row.required,
        passed=row.passed,
        failed=row.failed,
        errored=row.errored,
        total=row.total,
        statistic=row.statistic,
        threshold=row.threshold,
        lower=row.lower,
        upper=row.upper,
        duration_seconds=row.duration_seconds,
        details=dict(row.details or {}),
        explanation=str((row.details or {}).get("explanation", "")),
    )


@dataclass(frozen=True)
class Subject:
    """What a certificate speaks of: the job and the endpoint it called, as its claim read
    them (a target edited while the job ran does not change what the job tested)."""

    job_id: uuid.UUID
    target_id: uuid.UUID
    target_name: str
    provider: str
    model: str
    endpoint: str  # the URL the job called (the region's endpoint, else the base URL)
    region: str | None
    suite_name: str
    suite_version: str
    suite_hash: str
    run: certs.RunRecord | None = None  # what the verdict was reached under (format 2)


def certificate_params(
    settings: Settings,
    signer: Signer,
    subject: Subject,
    verdict: Verdict,
    issued_at: datetime,
    rows: Sequence[Any],
    listing: list[str] | None,
) -> dict[str, object]:
    """Sign the certificate; the parameters of the statements that store it (the certificates
    repository's `issue`, and `issuing`'s within a job's terminal statement). `listing`: the
    models the connectivity check saw (fingerprint.model_listing); without one there is
    nothing to compare."""
    fp = fingerprint.compute(subject.provider, subject.endpoint, subject.model, listing)
    validity = timedelta(days=settings.certification_validity_days)
    payload = certs.build_payload(
        certification_id=str(subject.job_id),
        target_id=str(subject.target_id),
        target_name=subject.target_name,
        model=subject.model,
        region=subject.region,
        endpoint_fingerprint=fp,
        suite_name=subject.suite_name,
        suite_version=subject.suite_version,
        suite_hash=subject.suite_hash,
        results=[as_result(r) for r in rows],
        verdict=verdict.value,
        key_id=signer.key_id,
        issued_at=issued_at,
        valid_for=validity,
        run=subject.run,
    )
    document = signer.sign(payload)
    return {
        "of_target": subject.target_id,
        "subject_region": subject.region,
        "now": issued_at,
        "fingerprint": fp,
        "compare": listing is not None,
        "is_certified": verdict.value in CERTIFIED,
        "subject_suite": subject.suite_name,
        "job_id": subject.job_id,
        "certificate_id": uuid.uuid4(),
        "new_payload": document["payload"],
        "new_signature": document["signature"],
        "new_key_id": signer.key_id,
        "certificate_valid_until": issued_at + validity,
    }


def issue(
    session: Session,
    settings: Settings,
    signer: Signer,
    subject: Subject,
    verdict: Verdict,
    issued_at: datetime,
    rows: Sequence[Any],
    excerpts: Mapping[str, Sequence[str]] | None = None,
) -> list[Queued]:
    """Sign and store the certificate of a job that just succeeded (in its transaction, after
    its terminal statement). `rows`: its check results (read in this transaction, or as a
    first delivery stored them, with `excerpts`, see fingerprint.model_listing). Returns the
    certifications it queued (fingerprint change), to publish after commit.
    """
    listing = fingerprint.model_listing(session, subject.job_id, rows, excerpts)
    params = certificate_params(settings, signer, subject, verdict, issued_at, rows, listing)
    register_keys(session, signer)
    stale = certificate_rows.issue(session, params)
    return _recertify(session, settings, subject, stale, bool(params["is_certified"]))


def _recertify(
    session: Session,
    settings: Settings,
    job: Subject,
    stale: Sequence[Row[Any, Any]],
    certified: bool,
) -> list[Queued]:
    """Queue a new certification for each suite whose certificate another fingerprint
    superseded."""
    queued: list[Queued] = []
    target: Target | None = None
    for old_id, suite in stale:
        if not suite or suite == job.suite_name:
            continue  # this job's own certificate is the new statement for its suite
        target = target or session.get(Target, job.target_id)
        if target is None:
            break
        item = enqueue(
            session,
            settings,
            target,
            suite_name=suite,
            region=job.region,
            reason=FINGERPRINT_CHANGE,
            idempotency_key=f"{FINGERPRINT_CHANGE}:{old_id}",
            judges=certificate_rows.judges_of(session, old_id),
        )
        if item is not None:
            queued.append(item)
    return queued


def document(row: Certificate) -> dict[str, object]:
    return {"payload": row.payload, "signature": row.signature}


CANDIDATES = 500  # certificates read to find the newest of each suite (newest first)


def current_for_target(
    session: Session,
    target_id: uuid.UUID,
    region: str | None = None,
    any_region: bool = True,
    suite: str | None = None,
) -> tuple[Certificate | None, str | None]:
    """(the target's current certified certificate, None) or (None, why there is none).

    Per suite, the newest certificate counts when it is in force; without `suite`, the
    strongest suite with one in force decides (see the module docstring)."""
    rows = certificate_rows.newest_unrevoked(
        session, target_id, region=region, any_region=any_region, suite=suite, limit=CANDIDATES
    )
    newest: dict[tuple[str, str | None], Certificate] = {}
    for row in rows:
        key = (str(row.payload.get("suite", {}).get("name")), row.payload.get("region"))
        newest.setdefault(key, row)
    moment = datetime.now(UTC)
    standing = [
        row for row in newest.values() if row.superseded_at is None and row.valid_until > moment
    ]
    if not standing:
        named = f" for suite {suite!r}" if suite else ""
        return None, f"the target has no current certificate{named}"
    best = max(standing, key=lambda row: (_strength(row, standing), row.issued_at))
    if best.payload.get("verdict") not in CERTIFIED:
        ref = best.payload.get("suite", {}).get("ref")
        return None, (
            f"the target's latest {ref} certificate ({best.id}) is {best.payload.get('verdict')}"
        )
    return best, None


def covers_of(row: Certificate) -> frozenset[str]:
    """What a certificate's suite covers: format 2 says it; for format 1, the suite as
    shipped under that name@version, if it still is."""
    covers = row.payload.get("covers")
    if isinstance(covers, list):
        return frozenset(str(c) for c in covers)
    from app.certification.suites import available_suites

    suite = available_suites().get(str(row.payload.get("suite", {}).get("name")))
    if suite is not None and suite.ref == row.payload.get("suite", {}).get("ref"):
        return frozenset(suite.covers)
    return frozenset()


def _strength(row: Certificate, among: list[Certificate]) -> tuple[int, int]:
    """(how many others' coverage it includes, how much it covers): a suite that includes
    every other one's checks wins; incomparable suites are ranked by what they cover."""
    mine = covers_of(row)
    return sum(1 for other in among if covers_of(other) <= mine), len(mine)


def status_of(row: Certificate, now: datetime | None = None) -> str:
    moment = now or datetime.now(UTC)
    if row.revoked_at is not None:
        return "revoked"
    if row.superseded_at is not None:
        return "superseded"
    if row.valid_until <= moment:
        return "expired"
    return "valid" if row.payload.get("verdict") in CERTIFIED else "not_certified"


# Reading ----------------------------------------------------------------------------------


def to_view(row: Certificate) -> CertificateView:
    return CertificateView(
        payload=row.payload,
        signature=row.signature,
        id=row.id,
        status=status_of(row),
        issued_at=row.issued_at,
        valid_until=row.valid_until,
        revoked_at=row.revoked_at,
        superseded_at=row.superseded_at,
    )


def certificate_of(session: Session, who: Principal, cert_id: uuid.UUID) -> CertificateView:
    job = load_certification(session, who, cert_id)
    row = certificate_rows.for_certification(session, who.organization_id, job.id)
    if row is None:
        raise NotFound(
            "this certification has no certificate (yet): one is issued when it succeeds"
        )
    return to_view(row)


def current_of_target(
    session: Session,
    who: Principal,
    target_id: uuid.UUID,
    region: str | None = None,
    suite: str | None = None,
) -> CertificateView:
    target = load_target(session, who, target_id)
    row, why = current_for_target(
        session, target.id, region, any_region=region is None, suite=suite
    )
    if row is None:
        raise NotFound(why or "the target has no current valid certificate")
    return to_view(row)


def signing_keys(session: Session) -> SigningKeyList:
    """The keys workers registered before signing with them (signing.ensure_registered): the
    API publishes them without holding any private key."""
    return SigningKeyList(
        keys=[
            SigningKeyView(
                key_id=k.key_id,
                public_key=k.public_key,
                created_at=k.created_at,
                retired_at=k.retired_at,
            )
            for k in published_keys(session)
        ]
    )
