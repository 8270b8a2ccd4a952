"""Use cases behind /v1/certifications: create (outbox + publish after commit), read, list."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row
from sqlalchemy.orm import Session, sessionmaker

from app.certification.suites import Suite, SuiteError
from app.config import Settings
from app.db import jobs
from app.db.lifecycle import JobStatus
from app.db.models import Certification, CheckResultRow, Priority, Target
from app.db.session import continued
from app.schemas.resources import (
    CertificationCreate,
    CertificationFilter,
    CertificationView,
    CheckSummary,
    JobError,
    Progress,
    SuiteRef,
    Timings,
)
from app.services import judges
from app.services.auth import Principal
from app.services.dispatch import mark_now
from app.services.errors import Conflict, IdempotencyMismatch, InvalidField, NotFound
from app.services.pagination import page
from app.services.suites import resolve
from app.services.targets import planned_total, target_for_job

PublishFn = Callable[[uuid.UUID, str, str], bool]
MarkFn = Callable[[uuid.UUID], datetime]


def request_hash(body: CertificationCreate) -> str:
    dumped = body.model_dump(mode="json")
    if not dumped["judges"]:  # a body without judges hashes as it did before they existed
        del dumped["judges"]
    canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def to_view(
    row: Certification | Row[Any], checks: Sequence[CheckResultRow | Row[Any]]
) -> CertificationView:
    return CertificationView(
        id=row.id,
        target_id=row.target_id,
        status=row.status.value,
        verdict=row.verdict.value if row.verdict else None,
        score=row.score,
        priority=row.priority.value,
        region=row.region,
        queue=row.queue,
        reason=row.reason,
        suite=SuiteRef(name=row.suite_name, version=row.suite_version, content_hash=row.suite_hash),
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        progress=Progress(done=progress_of(row), total=total_of(row)),
        timings=Timings(
            created_at=row.created_at,
            dispatched_at=row.dispatched_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
        ),
        error=JobError(cause=row.error_cause, message=row.error_message or "")
        if row.error_cause
        else None,
        valid_until=row.valid_until,
        checks=[
            CheckSummary(
                name=c.check_name,
                outcome=c.outcome.value,
                required=c.required,
                passed=c.passed,
                failed=c.failed,
                errored=c.errored,
                total=c.total,
                pass_rate=c.statistic,
                threshold=c.threshold,
                lower=c.lower,
                upper=c.upper,
                duration_seconds=c.duration_seconds,
                explanation=str((c.details or {}).get("explanation", "")),
            )
            for c in checks
        ],
        verdict_reasons=verdict_reasons(row.verdict.value if row.verdict else None, checks),
    )


def verdict_reasons(verdict: str | None, checks: Sequence[Any]) -> list[str]:
    """The checks that decided a verdict short of `certified`, each with its explanation:
    required ones that failed (not_certified), or that errored, were inconclusive or did
    not run (inconclusive), or optional ones that did not pass (with warnings)."""
    deciding: Callable[[Any], bool] | None = {
        "not_certified": lambda c: c.required and c.outcome.value == "failed",
        "inconclusive": lambda c: c.required and c.outcome.value != "passed",
        "certified_with_warnings": lambda c: (
            not c.required and c.outcome.value not in ("passed", "skipped")
        ),
    }.get(verdict or "")
    if deciding is None:
        return []
    return [
        f"{c.check_name}: {(c.details or {}).get('explanation') or c.outcome.value}"
        for c in checks
        if deciding(c)
    ]


def total_of(row: Any) -> int:
    """The planned samples; a job that ran to its end did all it was to do (a sequential check
    stops before the most samples it planned, issue #23)."""
    if row.status is JobStatus.SUCCEEDED:
        return progress_of(row)
    return int(row.progress_total)


def progress_of(row: Any) -> int:
    """Samples done: the stored checks' and those of the check under way (a renewal may lag
    a checkpoint by a moment: never past the total)."""
    done = int(row.progress_done) + int(getattr(row, "progress_running", 0) or 0)
    return min(done, int(row.progress_total)) if row.progress_total else done


def queue_for(settings: Settings, region: str | None) -> str:
    """The queue the operator routes `region`'s certifications to (never a tenant's choice)."""
    return settings.region_queues.get(region or "", settings.certification_queue_name)


def create_certification(
    factory: sessionmaker[Session],
    settings: Settings,
    publish: PublishFn,
    who: Principal,
    body: CertificationCreate,
    idempotency_key: str | None,
    reason: str = "requested",
    mark_dispatched: MarkFn | None = None,
    session: Session | Connection | None = None,
    target: Row[Any] | None = None,
) -> tuple[CertificationView, bool]:
    """Insert the job, commit, then publish. Returns (view, replayed).

    `mark_dispatched` records `dispatched_at` after a publish: the API passes its batched
    DispatchMarks (one UPDATE per batch, see app/services/dispatch.py); without it the mark
    is written at once in its own transaction. `session`: an open transaction to continue
    (the request's authentication) and commit, instead of a new one; `target`: the job's
    target as that transaction read it already (targets.authenticate_with_target)."""
    # Kept to tell a replay from a reuse of the key with another body: only with a key.
    digest = request_hash(body) if idempotency_key else None
    # One transaction for the validation reads, the insert and (only when the key was used
    # before) the idempotency lookup: a new key costs no extra round trip.
    with continued(factory, session) as session:
        try:
            values = _job_values(session, settings, who, body, reason, target)
        except (InvalidField, NotFound):
            # A retried POST replays its job even if the target or suite changed since.
            existing = (
                _find_by_idempotency_key(session, who, idempotency_key) if idempotency_key else None
            )
            if existing is None:
                raise
            return _replay_in(session, existing, digest)
        # With a key, a concurrent POST using it makes this wait for its commit, then do nothing.
        row = jobs.insert_job(
            session,
            values | {"idempotency_key": idempotency_key, "request_hash": digest},
            once=idempotency_key is not None,
        )
        if row is None:
            existing = _find_by_idempotency_key(session, who, idempotency_key or "")
            if existing is None:  # not expected: ON CONFLICT skips only a committed row
                raise Conflict("a concurrent request with this Idempotency-Key failed; retry")
            return _replay_in(session, existing, digest)
    # After commit, never inside the transaction: a lost publish is the sweeper's to repair.
    view = to_view(row, [])
    if publish(row.id, row.queue, row.priority.value):
        view.timings.dispatched_at = (
            mark_dispatched(row.id) if mark_dispatched else mark_now(factory, row.id)
        )
    return view, False


def _job_values(
    session: Session | Connection,
    settings: Settings,
    who: Principal,
    body: CertificationCreate,
    reason: str,
    target: Row[Any] | None = None,
) -> dict[str, object]:
    """Validate the body against the suite and the target; the new row's columns."""
    try:
        suite = resolve(session, settings, who.organization_id, body.suite)
    except SuiteError as exc:
        raise InvalidField(["body", "suite"], str(exc)) from None
    if target is None or target.id != body.target_id:
        target = target_for_job(session, who, body.target_id)
    if body.region is not None and body.region not in target.endpoints:
        raise InvalidField(
            ["body", "region"], f"the target declares no endpoint for region {body.region!r}"
        )
    if body.region is None and target.base_url is None:
        raise InvalidField(
            ["body", "region"],
            "the target has only per-region endpoints; "
            "name one of: " + ", ".join(sorted(target.endpoints)),
        )
    bound = judges.bind(session, who.organization_id, suite, body.judges)
    return new_job_values(settings, target, suite, body.region, body.priority, reason, bound)


def new_job_values(
    settings: Settings,
    target: Target | Row[Any],
    suite: Suite,
    region: str | None,
    priority: str,
    reason: str,
    bound_judges: dict[str, str] | None = None,
) -> dict[str, object]:
    """The columns of a new queued job (the API's POST and the system's own enqueue), every
    one with a Python-side default included (the POST's INSERT runs as a db.direct.Hot)."""
    return dict(
        id=uuid.uuid4(),
        organization_id=target.organization_id,
        target_id=target.id,
        region=region,
        queue=queue_for(settings, region),
        suite_name=suite.name,
        suite_version=suite.version,
        suite_hash=suite.content_hash,
        status=JobStatus.QUEUED,
        priority=Priority(priority),
        reason=reason,
        attempt=0,
        max_attempts=settings.max_attempts,
        progress_done=0,
        progress_total=planned_total(target, suite, region),
        delivery_count=0,
        judges=bound_judges or {},
    )


def _find_by_idempotency_key(
    session: Session | Connection, who: Principal, key: str
) -> Row[Any] | None:
    return jobs.by_idempotency_key(session, who.organization_id, key)


def _replay_in(
    session: Session | Connection, row: Row[Any], digest: str | None
) -> tuple[CertificationView, bool]:
    if row.request_hash != digest:
        raise IdempotencyMismatch(
            "this Idempotency-Key was already used with a different request body"
        )
    return to_view(row, jobs.checks_of(session, [row.id])[row.id]), True


def get_certification(session: Session, who: Principal, cert_id: uuid.UUID) -> CertificationView:
    row = load_certification(session, who, cert_id)
    return to_view(row, jobs.checks_of(session, [row.id])[row.id])


def load_certification(session: Session, who: Principal, cert_id: uuid.UUID) -> Certification:
    row = jobs.load(session, who.organization_id, cert_id)
    if row is None:
        raise NotFound("no such certification")
    return row


def list_certifications(
    session: Session, who: Principal, query: CertificationFilter
) -> tuple[list[CertificationView], str | None]:
    stmt = jobs.listing(
        who.organization_id,
        status=JobStatus(query.status) if query.status else None,
        verdict=query.verdict,
        target_id=query.target_id,
        since=query.since,
    )
    rows, next_cursor = page(session, stmt, Certification, query.cursor, query.limit)
    checks = jobs.checks_of(session, [r.id for r in rows])
    return [to_view(r, checks[r.id]) for r in rows], next_cursor
