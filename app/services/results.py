"""Per-check results and the evidence stream of one certification (organization-scoped)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

from sqlalchemy.orm import Session, sessionmaker

from app.certification.evidence import sample_record
from app.certification.results import Grade, Sample
from app.db import jobs
from app.db.models import SampleRow
from app.schemas.results import (
    BaselineView,
    CheckResultView,
    EvidenceLine,
    RegressionView,
    ResultsView,
)
from app.services import baselines
from app.services.auth import Principal
from app.services.certifications import load_certification
from app.services.pagination import page_in_order

EVIDENCE_BATCH = 500


def results(session: Session, who: Principal, cert_id: uuid.UUID) -> ResultsView:
    job = load_certification(session, who, cert_id)
    rows = jobs.check_rows(session, job.id)
    checks = [
        CheckResultView(
            name=r.check_name,
            check=(r.details or {}).get("check"),
            outcome=r.outcome.value,
            required=r.required,
            passed=r.passed,
            failed=r.failed,
            errored=r.errored,
            total=r.total,
            statistic=r.statistic,
            lower=r.lower,
            upper=r.upper,
            threshold=r.threshold,
            duration_seconds=r.duration_seconds,
            attempt=r.attempt,
            explanation=str((r.details or {}).get("explanation", "")),
            regression=regression_of(r.details),
            details={k: v for k, v in (r.details or {}).items() if k != "explanation"},
        )
        for r in rows
    ]
    found = baselines.records((c.name, c.details) for c in checks)
    reference = baselines.reference(session, found["baseline"])
    return ResultsView(
        certification_id=job.id,
        status=job.status.value,
        verdict=job.verdict.value if job.verdict else None,
        suite=f"{job.suite_name}@{job.suite_version}",
        baseline=BaselineView(**reference) if reference is not None else None,
        regressed=[r["check"] for r in found["regressed"]],
        checks=checks,
    )


def regression_of(details: dict[str, object] | None) -> RegressionView | None:
    record = (details or {}).get("regression")
    return RegressionView.model_validate(record) if isinstance(record, dict) else None


def evidence_lines(
    factory: sessionmaker[Session], who: Principal, cert_id: uuid.UUID
) -> Iterator[str]:
    """Check ownership now (so a 404 comes before the stream), then stream lazily."""
    with factory() as session:
        job_id = load_certification(session, who, cert_id).id
    return _stream(factory, job_id)


def _stream(factory: sessionmaker[Session], job_id: uuid.UUID) -> Iterator[str]:
    for row in jobs.samples_streamed(factory, job_id, EVIDENCE_BATCH):
        line = EvidenceLine(**sample_record(row.check_name, sample_of(row)))
        yield json.dumps(line.model_dump(mode="json"), ensure_ascii=False) + "\n"


def list_samples(
    session: Session,
    who: Principal,
    cert_id: uuid.UUID,
    check: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[EvidenceLine], str | None]:
    """A page of the evidence stream (same lines, same order), for clients that want JSON."""
    job_id = load_certification(session, who, cert_id).id
    rows, next_cursor = page_in_order(
        session, jobs.samples_of(job_id, check), SampleRow, cursor, limit
    )
    items = [EvidenceLine(**sample_record(r.check_name, sample_of(r))) for r in rows]
    return items, next_cursor


def sample_of(row: SampleRow) -> Sample:
    return Sample(
        index=row.sample_index,
        prompt_id=row.prompt_id,
        grade=Grade(row.grade),
        request_summary=row.request_summary or {},
        response_excerpt=row.response_excerpt,
        latency_ms=row.latency_ms,
        ttft_ms=row.ttft_ms,
        status_code=row.status_code,
        error=row.error,
        error_cause=row.error_cause,
        detail=row.detail or {},
        finish_reason=row.finish_reason,
        usage=row.usage,
        served_model=row.served_model,
        retries=row.retries or 0,
    )
