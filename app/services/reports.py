"""One certification's report, read from what the API already serves: the certification
view (verdict reasons, timings), its check results (details: quantiles, throughput), its
evidence, its certificate, and the target's previous certification of the same suite."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app.certification.evidence import sample_record
from app.certification.suites import SuiteError, get_suite
from app.db import certificates as certificate_rows
from app.db import jobs
from app.db.models import Certification, Target
from app.reports.model import (
    Comparison,
    Fact,
    Report,
    check_from_record,
    compare,
    sample_from_record,
)
from app.reports.render import facts_from_payload
from app.services import baselines, certificates
from app.services.auth import Principal
from app.services.certifications import get_certification
from app.services.errors import NotFound
from app.services.results import results, sample_of

# Samples laid out on one page; the evidence file has them all. Failed and errored ones come
# first, so those are the ones a long run keeps on the page.
MAX_SAMPLES = 1500


@dataclass(frozen=True)
class Links:
    """Where the page's links point (the owner's report, a share, the CLI's file differ)."""

    certificate: str
    evidence: str
    keys: str
    verify: str
    api_base: str  # for the verify commands


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "–"


def build_report(
    session: Session, organization_id: uuid.UUID, cert_id: uuid.UUID, links: Links
) -> Report:
    """The report of one of the organization's certifications (NotFound otherwise)."""
    who = Principal(organization_id, "", uuid.UUID(int=0))
    view = get_certification(session, who, cert_id)
    checks = [
        check_from_record(c.model_dump(mode="json")) for c in results(session, who, cert_id).checks
    ]
    target = session.get(Target, view.target_id)
    cert_row = certificate_rows.for_certification(session, organization_id, cert_id)
    payload = cert_row.payload if cert_row is not None else {}
    status = certificates.status_of(cert_row) if cert_row is not None else None

    rows = jobs.worst_samples(session, cert_id, MAX_SAMPLES)
    total = jobs.sample_count(session, cert_id)
    position = {c.name: i for i, c in enumerate(checks)}
    samples = sorted(
        (sample_from_record(sample_record(r.check_name, sample_of(r))) for r in rows),
        key=lambda s: ({"fail": 0, "error": 1}.get(s.grade, 2), position.get(s.check, 99), s.index),
    )

    suite_ref = f"{view.suite.name}@{view.suite.version}"
    covers = list(payload.get("covers") or [])
    if not covers:
        try:
            suite = get_suite(view.suite.name)
            covers = list(suite.covers) if suite.version == view.suite.version else []
        except SuiteError:
            covers = []
    timings = view.timings
    facts = (
        facts_from_payload(payload, status)
        if payload
        else [Fact("Suite content hash", view.suite.content_hash, True)]
    )
    facts += [
        Fact("Status", f"{view.status} (attempt {view.attempt} of {view.max_attempts})"),
        Fact("Created", _when(timings.created_at), True),
        Fact("Started", _when(timings.started_at), True),
        Fact("Finished", _when(timings.finished_at), True),
    ]
    if timings.started_at and timings.finished_at:
        seconds = (timings.finished_at - timings.started_at).total_seconds()
        facts.append(Fact("Run time", f"{seconds:.1f} s"))

    commands = []
    if cert_row is not None:
        commands = [
            f"curl -sS {links.api_base}/v1/signing-keys > keys.json",
            f'curl -sS -H "Authorization: Bearer $TOKEN" '
            f"{links.api_base}/v1/certifications/{cert_id}/certificate > certificate.json",
            "modelcert verify certificate.json --keys keys.json",
        ]
    return Report(
        certification_id=str(cert_id),
        status=view.status,
        verdict=view.verdict,
        verdict_reasons=list(view.verdict_reasons),
        target_name=str(
            (payload.get("target") or {}).get("name") or (target.name if target else "")
        ),
        target_id=str(view.target_id),
        model=str(payload.get("model") or (target.model if target else "")),
        region=view.region,
        suite_ref=suite_ref,
        covers=covers,
        checks=checks,
        samples=samples,
        samples_total=int(total or 0),
        facts=facts,
        certificate={"payload": cert_row.payload, "signature": cert_row.signature}
        if cert_row is not None
        else None,
        certificate_status=status,
        comparison=_previous(session, organization_id, cert_id),
        error=f"{view.error.cause}: {view.error.message}" if view.error else None,
        links={
            "keys": links.keys,
            "verify": links.verify,
            "evidence": links.evidence,
            **({"certificate": links.certificate} if cert_row is not None else {}),
        },
        verify_commands=commands,
        generated_by="modelcert",
    )


def _previous(
    session: Session, organization_id: uuid.UUID, cert_id: uuid.UUID
) -> Comparison | None:
    """Against the certification's baseline (services/baselines: the target's last certified
    certification of the same suite version before it), what its regressions were judged
    against: the page and the certificate compare with the same run, the same way."""
    baseline = baselines.for_job(session, cert_id)
    if baseline is None:
        return None
    previous = session.get(Certification, uuid.UUID(baseline.certification_id))
    if previous is None or previous.organization_id != organization_id:
        return None
    who = Principal(organization_id, "", uuid.UUID(int=0))
    current = results(session, who, cert_id).checks
    before = results(session, who, previous.id).checks
    return compare(
        str(previous.id),
        previous.verdict.value if previous.verdict else None,
        _when(previous.finished_at),
        [check_from_record(c.model_dump(mode="json")) for c in before],
        [check_from_record(c.model_dump(mode="json")) for c in current],
    )


def certificate_document(
    session: Session, organization_id: uuid.UUID, cert_id: uuid.UUID
) -> dict[str, object]:
    row = certificate_rows.for_certification(session, organization_id, cert_id)
    if row is None:
        raise NotFound("this certification has no certificate (yet)")
    return certificates.document(row)


def certification_exists(session: Session, organization_id: uuid.UUID, cert_id: uuid.UUID) -> bool:
    return jobs.exists_for(session, organization_id, cert_id)


def recent(session: Session, organization_id: uuid.UUID, limit: int = 50) -> list[dict[str, str]]:
    """The organization's latest certifications, for the list page."""
    rows = jobs.latest_with_target_name(session, organization_id, limit)
    return [
        {
            "id": str(job.id),
            "created": _when(job.created_at),
            "target": name,
            "suite": f"{job.suite_name}@{job.suite_version}",
            "status": job.status.value,
            "verdict": job.verdict.value if job.verdict else "",
        }
        for job, name in rows
    ]
