"""The worker's side of a job: claim with a lease, checkpoint, finish exactly once.

Postgres decides, not the broker: every write after the claim is fenced on
(status = 'running' AND attempt = the claimed attempt), so a duplicate or stale delivery
can never write a second result or a second terminal state.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Connection,
    Integer,
    Interval,
    Row,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Session, sessionmaker

from app.certification.results import CheckResult, Verdict
from app.db import lifecycle
from app.db.base import NO_ROW, ahead, table_of
from app.db.direct import hot
from app.db.lifecycle import JobStatus
from app.db.models import Certification, CheckResultRow, DeadLetter, SampleRow, Secret, Target
from app.db.session import autocommit_engine, transaction
from app.redaction import redact, redact_obj
from app.services import baselines, events

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    certification_id: uuid.UUID
    attempt: int
    max_attempts: int
    organization_id: uuid.UUID
    target_id: uuid.UUID
    suite_name: str
    suite_hash: str
    region: str | None
    queue: str
    priority: str
    deliveries: int = 1  # claims of this job so far, this one included
    # The progress total this delivery plans, written with its first progress or its end
    # (the job's row has the one planned when it was created; the target may have changed).
    planned: int | None = None
    suite_version: str = ""  # the job's, as created (its certificate names it)


# The hot path's statements are built once, over the tables, with bind parameters: built per
# call through the ORM they cost about four times the CPU of the round trip (worker profile).
_JOBS = table_of(Certification)
_c = _JOBS.c
_NOT_OURS = {"job_id": NO_ROW, "claimed_attempt": 0}  # parameters of a fence no row passes
# The claim: one conditional UPDATE. A CTE, so that the worker reads its inputs (target,
# secret) in the same statement (_CLAIM_WITH_INPUTS), in one round trip with no BEGIN
# and COMMIT of their own.
CLAIMED = (
    update(_JOBS)
    # (The statuses as OR-ed equalities, not IN: SQLAlchemy expands an IN list anew on
    # every execution.)
    .where(
        _c.id == bindparam("job_id"),
        or_(*(_c.status == s for s in lifecycle.CLAIM.sources)),
        _c.attempt < _c.max_attempts,
        _c.cancel_requested_at.is_(None),
    )
    .values(
        status=lifecycle.CLAIM.target,
        attempt=_c.attempt + 1,
        lease_until=func.now() + bindparam("lease", type_=Interval),
        started_at=func.coalesce(_c.started_at, func.now()),
        dispatched_at=func.coalesce(_c.dispatched_at, func.now()),
        worker=bindparam("worker_name"),
        next_attempt_at=None,
        delivery_count=_c.delivery_count + 1,
    )
    .returning(
        _c.id,
        _c.attempt,
        _c.max_attempts,
        _c.organization_id,
        _c.target_id,
        _c.suite_name,
        _c.suite_hash,
        _c.region,
        _c.queue,
        _c.priority,
        _c.delivery_count,
        _c.suite_version,
    )
    .cte("claimed")
)
_CLAIM = select(CLAIMED)


_TARGETS, _SECRETS = table_of(Target), table_of(Secret)
# The claim with the job's inputs: the target's columns targets.target_spec reads and the
# secret, beside the claimed row, in one statement and one round trip (no BEGIN/COMMIT).
_CLAIM_WITH_INPUTS = hot(
    select(
        CLAIMED,
        *(
            _TARGETS.c[name]
            for name in (
                "name",
                "provider",
                "model",
                "base_url",
                "endpoints",
                "capabilities",
                "rate_limit_rps",
                "max_concurrency",
                "secret_id",
                "deleted_at",
            )
        ),
        _SECRETS.c.ciphertext.label("secret_ciphertext"),
        baselines.of_claimed(CLAIMED),  # what its regressions are judged against
    ).select_from(
        CLAIMED.outerjoin(_TARGETS, _TARGETS.c.id == CLAIMED.c.target_id).outerjoin(
            _SECRETS, _SECRETS.c.id == _TARGETS.c.secret_id
        )
    ),
    job_id=NO_ROW,
    lease=timedelta(0),
    worker_name="",
)


def claim_with_inputs(
    factory: sessionmaker[Session], cert_id: uuid.UUID, worker: str, lease_seconds: int
) -> Row[Any] | None:
    """The `claim` transition with the job's inputs (target, secret): the claimed row's
    columns (claim_from reads them) and the target's; None when there is nothing to claim."""
    params = claim_params(cert_id, worker, lease_seconds)
    return _CLAIM_WITH_INPUTS.first(autocommit_engine(factory.kw["bind"]), params)


def claim_params(cert_id: uuid.UUID, worker: str, lease_seconds: int) -> dict[str, object]:
    return {
        "job_id": cert_id,
        "lease": timedelta(seconds=lease_seconds),
        "worker_name": worker[:300],
    }


def claim_from(row: Row[Any]) -> Claim:
    """The Claim of a row whose first columns are CLAIMED's."""
    return Claim(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9].value,
        row[10],
        suite_version=row[11],
    )


def owned_by_claim() -> ColumnElement[bool]:
    """The job is running under the claim in parameters `job_id` and `claimed_attempt`."""
    return and_(
        _c.id == bindparam("job_id"),
        _c.status == JobStatus.RUNNING,  # the status every ending leaves (lifecycle.ENDINGS)
        _c.attempt == bindparam("claimed_attempt"),
    )


def _fence(claim: Claim) -> dict[str, object]:
    return {"job_id": claim.certification_id, "claimed_attempt": claim.attempt}


def _progress(claim: Claim, done: int) -> dict[str, object]:
    """A fenced progress write: `done` more samples, and the total this delivery plans."""
    return _fence(claim) | {"done": done, "total": claim.planned}


_RENEW = ahead(
    update(_JOBS)
    .where(owned_by_claim())
    .values(
        lease_until=func.now() + bindparam("lease", type_=Interval),
        progress_running=bindparam("running", type_=Integer),
    )
    .returning(_c.cancel_requested_at),
    **_NOT_OURS,
    lease=timedelta(0),
    running=0,
)
_TOTAL = func.coalesce(bindparam("total", type_=Integer), _c.progress_total)
_PROGRESS = ahead(
    update(_JOBS)
    .where(owned_by_claim())
    .values(
        progress_done=_c.progress_done + bindparam("done", type_=Integer),
        progress_running=0,
        progress_total=_TOTAL,
    )
    .returning(_c.id),
    **_NOT_OURS,
    done=0,
    total=None,
)
_CHECKS = table_of(CheckResultRow)
CHECK_COLUMNS = [c.key for c in _CHECKS.c if c.key != "created_at"]
_SAMPLES = table_of(SampleRow)
_SAMPLE_COLUMNS = [c.key for c in _SAMPLES.c if c.key not in ("id", "created_at")]
_SAMPLE_ROWS = func.jsonb_populate_recordset(
    literal_column(f"NULL::{_SAMPLES.name}"),
    bindparam("samples", type_=JSONB),
).table_valued(*_SAMPLE_COLUMNS)


def check_inserted(gate: ColumnElement[bool] | None = None) -> tuple[CTE, CTE]:
    """A check's row (parameters `new_<column>`) and its samples (`samples`, a JSON array of
    rows, which jsonb_populate_recordset types by the table), as two CTEs: the samples go in
    only if the check's row did, and the row only where `gate` holds."""
    row = select(*(bindparam(f"new_{k}", type_=_CHECKS.c[k].type) for k in CHECK_COLUMNS))
    inserted = (
        insert(_CHECKS)
        .from_select(CHECK_COLUMNS, row if gate is None else row.where(gate))
        .on_conflict_do_nothing(index_elements=["certification_id", "check_name"])
        .returning(_CHECKS.c.id)
        .cte("check_inserted")
    )
    samples = (
        insert(_SAMPLES)
        .from_select(_SAMPLE_COLUMNS, select(*_SAMPLE_ROWS.c).where(exists(select(inserted.c.id))))
        .on_conflict_do_nothing(index_elements=["certification_id", "check_name", "sample_index"])
        .cte("samples_inserted")
    )
    return inserted, samples


_CHECK_INSERTED, _SAMPLES_INSERTED = check_inserted()
_INSERT_CHECK = select(_CHECK_INSERTED.c.id).add_cte(_SAMPLES_INSERTED)
_STORED = ahead(
    select(_CHECKS)
    .where(_CHECKS.c.certification_id == bindparam("job_id"))
    .order_by(_CHECKS.c.created_at),
    job_id=NO_ROW,
)
# What a terminal UPDATE returns: the webhook event's columns and what the certificate needs.
ENDED = (
    *(_c[col.key] for col in events.ENDED_COLUMNS),
    _c.id,
    _c.region,
    _c.suite_name,
    _c.suite_version,
    _c.suite_hash,
)


def claim_job(
    factory: sessionmaker[Session], cert_id: uuid.UUID, worker: str, lease_seconds: int
) -> Claim | None:
    """The one conditional UPDATE that turns a delivery into the right to run (the worker
    runs it with its inputs, run.claim_and_prepare)."""
    with transaction(factory) as session:
        row = session.execute(_CLAIM, claim_params(cert_id, worker, lease_seconds)).first()
        if row is not None:
            return claim_from(row)
        settle_unclaimable(session, cert_id)
        return None


def settle_unclaimable(session: Session, cert_id: uuid.UUID) -> None:
    """After a claim found nothing, in a transaction: a claimable job out of attempts is
    dead-lettered here, once; a queued job whose cancel was requested is cancelled."""
    exhausted = session.execute(
        update(_JOBS)
        .where(
            _c.id == cert_id,
            _c.status.in_(lifecycle.EXHAUST.sources),
            _c.attempt >= _c.max_attempts,
        )
        .values(
            status=lifecycle.EXHAUST.target,
            finished_at=func.now(),
            lease_until=None,
            error_cause=func.coalesce(_c.error_cause, "max_attempts"),
            error_message=func.coalesce(_c.error_message, "attempts exhausted"),
        )
        .returning(_c.id, _c.organization_id, _c.attempt, _c.error_cause, _c.error_message)
    ).first()
    if exhausted is not None:
        _dead_letter(session, exhausted[0], exhausted[1], exhausted[3], exhausted[4], exhausted[2])
        events.certification_ended(session, cert_id)
    cancelled = session.execute(
        update(_JOBS)
        .where(
            _c.id == cert_id,
            _c.status.in_(lifecycle.CANCEL.sources),
            _c.cancel_requested_at.is_not(None),
        )
        .values(
            status=lifecycle.CANCEL.target,
            finished_at=func.now(),
            error_cause="cancelled",
            error_message="cancelled by request",
        )
        .returning(_c.id)
    ).first()
    if cancelled is not None:
        events.certification_ended(session, cert_id)


def _dead_letter(
    session: Session,
    cert_id: uuid.UUID,
    org_id: uuid.UUID,
    cause: str | None,
    message: str | None,
    attempts: int,
) -> None:
    letter = DeadLetter(
        certification_id=cert_id,
        organization_id=org_id,
        cause=cause or "unknown",
        last_error=message,
        attempts=attempts,
    )
    session.add(letter)
    events.dead_letter_created(session, letter)


def renew_lease(
    factory: sessionmaker[Session], claim: Claim, lease_seconds: int, running: int = 0
) -> tuple[bool, bool]:
    """(still ours, cancel requested). `running`: samples finished in the check under way."""
    with transaction(factory) as session:
        row = session.execute(
            _RENEW, _fence(claim) | {"lease": timedelta(seconds=lease_seconds), "running": running}
        ).first()
    if row is None:
        return False, False
    return True, row[0] is not None


def completed_checks(session: Session | Connection, cert_id: uuid.UUID) -> set[str]:
    return set(
        session.scalars(
            select(CheckResultRow.check_name).where(CheckResultRow.certification_id == cert_id)
        )
    )


def stop_reason(session: Session | Connection, cert_id: uuid.UUID) -> str | None:
    """Why an earlier delivery stopped the run (a stored check whose cause ends it, see
    engine.STOPPING_CAUSES), for the checks a redelivery has left to skip."""
    from app.certification.engine import STOPPING_CAUSES, stop_message

    cause = _CHECKS.c.details["cause"].astext
    found = session.execute(
        select(cause, _CHECKS.c.details["model"].astext)
        .where(_CHECKS.c.certification_id == cert_id, cause.in_(STOPPING_CAUSES))
        .limit(1)
    ).first()
    return stop_message(found[0], found[1] or "") if found is not None else None


@dataclass(frozen=True)
class Stored:
    """A check as this delivery stored it (secrets redacted): its `check_results` columns
    (`row`, read like a row of the table) and the excerpts of its samples answered with 200
    (the model listing, for the fingerprint). A first delivery decides from these instead of
    reading back what it wrote."""

    row: SimpleNamespace
    excerpts: tuple[str, ...]


def save_check(
    factory: sessionmaker[Session], claim: Claim, result: CheckResult, secrets: tuple[str, ...] = ()
) -> Stored | None:
    """Checkpoint one finished check with its samples; None (a no-op) if the job is no longer
    ours."""
    with transaction(factory) as session:
        owned = session.execute(_PROGRESS, _progress(claim, result.total)).first()
        if owned is None:
            return None
        return _insert_check(session, claim, result, secrets)


def _insert_check(
    session: Session, claim: Claim, result: CheckResult, secrets: tuple[str, ...]
) -> Stored | None:
    """The check's row and its samples, unfenced: the caller's transaction holds the fence.
    None when the check was stored already (by an earlier delivery)."""
    params, stored = check_params(claim, result, secrets)
    if session.execute(_INSERT_CHECK, params).first() is None:
        return None
    return stored


def check_params(
    claim: Claim, result: CheckResult, secrets: tuple[str, ...]
) -> tuple[dict[str, object], Stored]:
    """The parameters of `check_inserted`'s CTEs (secrets redacted), and the check as they
    store it."""
    values = {
        "id": uuid.uuid4(),
        "certification_id": claim.certification_id,
        "check_name": result.name,
        "outcome": result.outcome,
        "required": result.required,
        "passed": result.passed,
        "failed": result.failed,
        "errored": result.errored,
        "total": result.total,
        "statistic": result.statistic,
        "threshold": result.threshold,
        "lower": result.lower,
        "upper": result.upper,
        "duration_seconds": result.duration_seconds,
        "details": redact_obj(result.details | {"explanation": result.explanation}, secrets),
        "attempt": claim.attempt,
    }
    samples = [
        {
            "certification_id": str(claim.certification_id),
            "check_name": result.name,
            "sample_index": s.index,
            "prompt_id": s.prompt_id[:200],
            "grade": s.grade.value,
            "request_summary": redact_obj(s.request_summary, secrets),
            "response_excerpt": redact(s.response_excerpt, secrets),
            "latency_ms": s.latency_ms,
            "ttft_ms": s.ttft_ms,
            "status_code": s.status_code,
            "error": redact(s.error, secrets),
            "error_cause": s.error_cause,
            "detail": redact_obj(s.detail, secrets),
            "finish_reason": (s.finish_reason or None) and s.finish_reason[:32],
            "usage": s.usage,
            "served_model": redact(s.served_model, secrets),
            "retries": s.retries,
        }
        for s in result.samples
    ]
    params = {f"new_{k}": v for k, v in values.items()} | {"samples": samples}
    return params, Stored(
        SimpleNamespace(**values),
        tuple(
            v["response_excerpt"]
            for v in samples
            if v["status_code"] == 200 and v["response_excerpt"] is not None
        ),
    )


def stored_results(session: Session, cert_id: uuid.UUID) -> list[Row[Any]]:
    """The job's check results, in the order they finished (rows with the table's columns)."""
    return list(session.execute(_STORED, {"job_id": cert_id}))


@dataclass(frozen=True)
class Decision:
    """What a succeeded job's results decided, written with its terminal state."""

    verdict: Verdict
    score: float | None
    valid_until: datetime | None = None  # set when certified: the certificate's end


def ending(*conditions: ColumnElement[bool]) -> CTE:
    """The terminal UPDATE, fenced on the claim (and `conditions`), as a CTE returning ENDED."""
    return (
        update(_JOBS)
        .where(owned_by_claim(), *conditions)
        .values(
            status=bindparam("new_status", type_=_c.status.type),
            verdict=bindparam("new_verdict", type_=_c.verdict.type),
            score=bindparam("new_score", type_=_c.score.type),
            error_cause=bindparam("cause", type_=_c.error_cause.type),
            error_message=bindparam("message", type_=_c.error_message.type),
            finished_at=func.now(),
            lease_until=None,
            progress_done=_c.progress_done + bindparam("done", type_=Integer),
            progress_running=0,
            progress_total=_TOTAL,
            valid_until=func.coalesce(
                bindparam("new_valid_until", type_=_c.valid_until.type), _c.valid_until
            ),
        )
        .returning(*ENDED)
        .cte("ended")
    )


def ending_params(
    claim: Claim,
    status: JobStatus,
    *,
    done: int = 0,
    decision: Decision | None = None,
    cause: str | None = None,
    message: str | None = None,
) -> dict[str, object]:
    return _progress(claim, done) | {
        "new_status": status,
        "new_verdict": decision.verdict if decision else None,
        "new_score": decision.score if decision else None,
        "cause": cause,
        "message": (message or "")[:2000] or None,
        "new_valid_until": decision.valid_until if decision else None,
    }


_ENDING = ending()
# The terminal UPDATE, and in the same statement (one round trip, not two) the webhook
# subscriptions its event goes to.
_FINISH = ahead(
    select(_ENDING, events.subscriptions(_ENDING.c.organization_id, _ENDING.c.target_id)),
    **_NOT_OURS,
    new_status=JobStatus.SUCCEEDED,
    new_verdict=None,
    new_score=None,
    cause=None,
    message=None,
    done=0,
    total=None,
    new_valid_until=None,
)


def finish(
    factory: sessionmaker[Session],
    claim: Claim,
    status: JobStatus,
    *,
    cause: str | None = None,
    message: str | None = None,
    dead_letter: bool = False,
    decide: Callable[[Session, Stored | None], Decision] | None = None,
    session_hook: Callable[[Session, Row[Any], Decision | None], None] | None = None,
    final_check: CheckResult | None = None,
    secrets: tuple[str, ...] = (),
) -> bool:
    """Set the one terminal state, fenced on our claim. Returns False if someone else did.

    `final_check` (the suite's last check) is saved in the same transaction, so the last
    check and the end of the job cost one commit. `decide` computes the verdict inside the
    same transaction (given the final check as stored, None when it was not); `session_hook`
    runs there too, after the UPDATE (certificates, follow-up jobs), with the row the
    terminal statement returned (`ENDED` columns and `subscriptions`).
    """
    lifecycle.ending(status)  # a running job ends only as succeeded, failed, timed_out, cancelled
    try:
        with transaction(factory) as session:
            # Unfenced: the fenced UPDATE below rolls it back when the job is not ours.
            final = (
                _insert_check(session, claim, final_check, secrets)
                if final_check is not None
                else None
            )
            decision = decide(session, final) if decide is not None else None
            job = session.execute(
                _FINISH,
                ending_params(
                    claim,
                    status,
                    done=final_check.total if final_check is not None else 0,
                    decision=decision,
                    cause=cause,
                    message=message,
                ),
            ).first()
            if job is None:
                raise _NotOurs
            if dead_letter:
                _dead_letter(
                    session,
                    claim.certification_id,
                    claim.organization_id,
                    cause,
                    message,
                    claim.attempt,
                )
            events.certification_ended(session, claim.certification_id, job, job.subscriptions)
            if session_hook is not None:
                session_hook(session, job, decision)
    except _NotOurs:
        return False
    return True


class _NotOurs(Exception):
    """Raised inside finish's transaction to roll it back: another claim owns the job."""


def backoff_seconds(
    attempt: int, base: float = 5.0, cap: float = 300.0, retry_after: float | None = None
) -> float:
    """Exponential backoff with full jitter, never sooner than Retry-After."""
    delay = random.uniform(0, min(cap, base * (2 ** max(0, attempt - 1))))
    return max(delay, retry_after or 0.0)


def schedule_retry(
    factory: sessionmaker[Session], claim: Claim, cause: str, message: str, delay: float
) -> JobStatus:
    """Back to `retrying` for the sweeper to republish after `delay`; failed when exhausted."""
    if claim.attempt >= claim.max_attempts:
        finish(
            factory,
            claim,
            JobStatus.FAILED,
            cause=cause,
            message=f"{message} (after {claim.attempt} attempts)",
            dead_letter=True,
        )
        return JobStatus.FAILED
    with transaction(factory) as session:
        session.execute(
            update(_JOBS)
            .where(owned_by_claim())
            .values(
                status=lifecycle.RETRY_LATER.target,
                lease_until=None,
                dispatched_at=None,
                next_attempt_at=func.now() + timedelta(seconds=delay),
                error_cause=cause,
                error_message=message[:2000],
            ),
            _fence(claim),
        )
    return lifecycle.RETRY_LATER.target


def release(factory: sessionmaker[Session], claim: Claim) -> None:
    """Give an unfinished job back (worker shutting down): the attempt does not count."""
    with transaction(factory) as session:
        session.execute(
            update(_JOBS)
            .where(owned_by_claim())
            .values(
                status=lifecycle.RELEASE.target,
                lease_until=None,
                dispatched_at=None,
                attempt=_c.attempt - 1,
                next_attempt_at=func.now(),
            ),
            _fence(claim),
        )


def time_out(factory: sessionmaker[Session], cert_id: uuid.UUID) -> None:
    """The soft time limit fired: the running job ends timed_out, keeping what it stored.
    Unfenced on the attempt: the task that hit the limit may no longer hold its claim."""
    with transaction(factory) as session:
        row = session.execute(
            update(_JOBS)
            .where(_c.id == cert_id, _c.status.in_(lifecycle.TIME_OUT.sources))
            .values(
                status=lifecycle.TIME_OUT.target,
                finished_at=func.now(),
                lease_until=None,
                error_cause="timeout",
                error_message="the certification exceeded CERTIFICATION_TIMEOUT",
            )
            .returning(_c.id)
        ).first()
        if row is not None:
            events.certification_ended(session, row[0])


def mark_dispatched(session: Session, cert_id: uuid.UUID, *, again: bool = False) -> None:
    """A waiting job's message was published: `dispatched_at` is now. A first publish sets
    it only where nothing has (the API's batched marks may be on their way); `again` (the
    sweeper republishing a lost or aged message) moves it. A job that started meanwhile keeps
    the mark its claim wrote."""
    conditions = [_c.id == cert_id, _c.status.in_(lifecycle.CLAIMABLE_STATUSES)]
    if not again:
        conditions.append(_c.dispatched_at.is_(None))
    session.execute(update(_JOBS).where(*conditions).values(dispatched_at=func.now()))


def publish_then_mark(
    factory: sessionmaker[Session],
    publish: Callable[[uuid.UUID, str, str], bool],
    cert_id: uuid.UUID,
    queue: str,
    priority: str,
) -> bool:
    """After commit, never inside the transaction: publish, then mark it dispatched. False
    when the broker refused: the row is the outbox, and the sweeper publishes it later."""
    if not publish(cert_id, queue, priority):
        return False
    with transaction(factory) as session:
        mark_dispatched(session, cert_id)
    return True
