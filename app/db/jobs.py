"""The jobs repository: every statement about a certification job, fast paths included.

Its row (`certifications`), its checks and samples (`check_results`, `samples`), its lease,
progress and dispatch marks, its dead letters, and the webhook outbox rows its ending writes
(app/db/job_events.py). Services say what should happen to a job (app/services/run.py,
conclude.py, sweeper.py, control.py, certifications.py); the statements, and the speed
tricks they need (db.direct's Hot statements on the DBAPI cursor, autocommit for a unit of
work that is one statement, statements built once over the tables), are here, so that the
number and shape of a job's statements can be read, and changed, in one file.

Every write that moves a job is one transition of app/db/lifecycle.py (its sources and its
target come from there), one function each; every terminal write then goes through `_ended`
(the dead letter when out of attempts, the webhook event).

The worker's side: claim with a lease, checkpoint, finish exactly once. Postgres decides,
not the broker: every write after the claim is fenced on (status = 'running' AND attempt =
the claimed attempt), so a duplicate or stale delivery can never write a second result or
a second terminal state.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    Select,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal_column,
    not_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Session, sessionmaker

from app.certification.results import CheckResult, Verdict
from app.db import baselines, lifecycle
from app.db import job_events as events
from app.db.base import NO_ROW, ahead, table_of
from app.db.direct import Hot, hot
from app.db.lifecycle import JobStatus
from app.db.models import (
    Certification,
    CheckResultRow,
    DeadLetter,
    Priority,
    SampleRow,
    Secret,
    Target,
)
from app.db.session import autocommit, autocommit_engine, transaction
from app.redaction import redact, redact_obj

log = logging.getLogger(__name__)


# --- The worker's side: the claim, the lease, checkpoints, the end ---------------------


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
) -> Any:
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


def claim_from(row: Any) -> Claim:
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
    # Checks stored in one transaction share created_at (now() is the transaction's time).
    .order_by(_CHECKS.c.created_at, _CHECKS.c.check_name),
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
    runs it with its inputs, claim_with_inputs)."""
    with transaction(factory) as session:
        row = session.execute(_CLAIM, claim_params(cert_id, worker, lease_seconds)).first()
        if row is not None:
            return claim_from(row)
        _settle_unclaimable(session, cert_id)
        return None


def settle_unclaimable(factory: sessionmaker[Session], cert_id: uuid.UUID) -> None:
    """After a claim found nothing, in a transaction of its own: see _settle_unclaimable."""
    with transaction(factory) as session:
        _settle_unclaimable(session, cert_id)


def _settle_unclaimable(session: Session, cert_id: uuid.UUID) -> None:
    """A claimable job out of attempts is dead-lettered here, once (`exhaust`); a queued job
    whose cancel was requested is cancelled (`cancel`)."""
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
        letter = Letter(exhausted[1], exhausted[3], exhausted[4], exhausted[2])
        _ended(session, cert_id, dead_letter=letter)
    cancel_waiting(session, cert_id, requested_before=True)


def cancel_waiting(session: Session, cert_id: uuid.UUID, *, requested_before: bool) -> bool:
    """The `cancel` transition: a job not running yet ends cancelled at once. From the API
    (POST /cancel, which requests it now), or `requested_before` (a claim found a cancel
    requested while the job waited). False when the job was not waiting."""
    conditions = [_c.id == cert_id, _c.status.in_(lifecycle.CANCEL.sources)]
    values: dict[str, Any] = {
        "status": lifecycle.CANCEL.target,
        "finished_at": func.now(),
    }
    if requested_before:
        conditions.append(_c.cancel_requested_at.is_not(None))
        values |= {"error_cause": "cancelled", "error_message": "cancelled by request"}
    else:
        values |= {
            "lease_until": None,
            "cancel_requested_at": func.now(),
            "error_cause": "cancelled",
            "error_message": "cancelled by request before it ran",
        }
    row = session.execute(
        update(_JOBS).where(*conditions).values(**values).returning(_c.id)
    ).first()
    if row is None:
        return False
    _ended(session, cert_id)
    return True


@dataclass(frozen=True)
class Letter:
    """A dead letter to write with a job's end: it ran out of attempts."""

    organization_id: uuid.UUID
    cause: str | None
    message: str | None
    attempts: int


def _ended(
    session: Session,
    cert_id: uuid.UUID,
    row: Any = None,
    hooks: Sequence[Any] | None = None,
    *,
    dead_letter: Letter | None = None,
) -> None:
    """What every terminal write does next, in its transaction: the dead letter of a job out
    of attempts, and the webhook event of its end (`row`, `hooks`: the ended job's columns and
    subscriptions when the terminal statement returned them, see job_events)."""
    if dead_letter is not None:
        letter = DeadLetter(
            certification_id=cert_id,
            organization_id=dead_letter.organization_id,
            cause=dead_letter.cause or "unknown",
            last_error=dead_letter.message,
            attempts=dead_letter.attempts,
        )
        session.add(letter)
        events.dead_letter_created(session, letter)
    events.certification_ended(session, cert_id, row, hooks)


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


def judges_of(conn: Connection | Session, cert_id: uuid.UUID) -> dict[str, Any]:
    """The job's judge bindings (judge name → target id), as its POST stored them."""
    bound = conn.scalar(select(Certification.judges).where(Certification.id == cert_id))
    return dict(bound or {})


def resume_point(factory: sessionmaker[Session], cert_id: uuid.UUID) -> tuple[set[str], str | None]:
    """The checks earlier deliveries completed, and why one stopped the run (stop_reason),
    read in autocommit: two statements, no BEGIN or COMMIT."""
    with autocommit(factory) as conn:
        return completed_checks(conn, cert_id), stop_reason(conn, cert_id)


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
    """The job's check results, in the order they finished, then by name (rows with the
    table's columns)."""
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
# ending()'s parameters (beside the fence's) under which it changes nothing.
_ENDING_NO_ROW: dict[str, object] = {
    "new_status": JobStatus.SUCCEEDED,
    "new_verdict": None,
    "new_score": None,
    "cause": None,
    "message": None,
    "done": 0,
    "total": None,
    "new_valid_until": None,
}
_FINISH = ahead(
    select(_ENDING, events.subscriptions(_ENDING.c.organization_id, _ENDING.c.target_id)),
    **_NOT_OURS,
    **_ENDING_NO_ROW,
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
    done = final_check.total if final_check is not None else 0
    try:
        with transaction(factory) as session:
            # Unfenced: the fenced UPDATE below rolls it back when the job is not ours.
            final = (
                _insert_check(session, claim, final_check, secrets)
                if final_check is not None
                else None
            )
            decision = decide(session, final) if decide is not None else None
            params = ending_params(
                claim, status, done=done, decision=decision, cause=cause, message=message
            )
            job = session.execute(_FINISH, params).first()
            if job is None:
                raise _NotOurs
            letter = Letter(claim.organization_id, cause, message, claim.attempt)
            _ended(
                session,
                claim.certification_id,
                job,
                job.subscriptions,
                dead_letter=letter if dead_letter else None,
            )
            if session_hook is not None:
                session_hook(session, job, decision)
    except _NotOurs:
        return False
    return True


class _NotOurs(Exception):
    """Raised inside finish's transaction to roll it back: another claim owns the job."""


def fail(
    factory: sessionmaker[Session],
    claim: Claim,
    cause: str,
    message: str,
    *,
    dead_letter: bool = False,
) -> bool:
    """The `fail` transition of the job we hold: failed at once (a cause no retry mends), or
    out of attempts (`dead_letter`). False when the job was no longer ours."""
    return finish(
        factory, claim, JobStatus.FAILED, cause=cause, message=message, dead_letter=dead_letter
    )


def stop(factory: sessionmaker[Session], claim: Claim) -> bool:
    """The `stop` transition: the job we hold was cancelled while it ran, and stopped at a
    sample boundary, keeping its evidence. False when the job was no longer ours."""
    return finish(
        factory,
        claim,
        lifecycle.STOP.target,
        cause="cancelled",
        message="cancelled by request; evidence so far is kept",
    )


# --- A first delivery's success in one statement (app/services/conclude.py) ---------------


def succeed_in_one(
    also_unless: ColumnElement[bool],
    gated: Callable[[ColumnElement[bool]], Sequence[CTE]],
    **no_row: Any,
) -> Hot:
    """The `succeed` transition of a first delivery as one statement (a Hot, run in
    autocommit: one round trip, no BEGIN or COMMIT): the terminal UPDATE, fenced on the
    claim and only where no webhook would hear of the job and `also_unless` does not hold;
    the last check with its samples; and `gated(gate)`'s CTEs (the certificate), each
    written only if the UPDATE was. It returns `ended` and `ours` (the job was still ours).
    `no_row`: `gated`'s parameters under which it writes nothing (the warm-up's)."""
    ended = ending(not_(events.subscribed(_c.organization_id, _c.target_id)), not_(also_unless))
    gate = exists(select(ended.c.id))
    return hot(
        select(
            gate.label("ended"), exists(select(_c.id).where(owned_by_claim())).label("ours")
        ).add_cte(*check_inserted(gate), *gated(gate)),
        **_NOT_OURS,
        **_ENDING_NO_ROW,
        **{f"new_{name}": None for name in CHECK_COLUMNS},
        samples=[],
        **no_row,
    )


def end_in_one(factory: sessionmaker[Session], statement: Hot, params: Mapping[str, Any]) -> Any:
    """Run a succeed_in_one statement: its row (`ended`, `ours`)."""
    return statement.first(autocommit_engine(factory.kw["bind"]), params)


def schedule_retry(
    factory: sessionmaker[Session], claim: Claim, cause: str, message: str, delay: float
) -> JobStatus:
    """Back to `retrying` for the sweeper to republish after `delay`; failed when exhausted."""
    if claim.attempt >= claim.max_attempts:
        fail(factory, claim, cause, f"{message} (after {claim.attempt} attempts)", dead_letter=True)
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
            _ended(session, row[0])


# --- Dispatch marks: a waiting job's message was published -------------------------------


def mark_dispatched(session: Session, cert_id: uuid.UUID, *, again: bool = False) -> None:
    """A waiting job's message was published: `dispatched_at` is now. A first publish sets
    it only where nothing has (the API's batched marks may be on their way); `again` (the
    sweeper republishing a lost or aged message) moves it. A job that started meanwhile keeps
    the mark its claim wrote."""
    conditions = [_c.id == cert_id, _c.status.in_(lifecycle.CLAIMABLE_STATUSES)]
    if not again:
        conditions.append(_c.dispatched_at.is_(None))
    session.execute(update(_JOBS).where(*conditions).values(dispatched_at=func.now()))


def mark_published(factory: sessionmaker[Session], cert_id: uuid.UUID) -> None:
    """mark_dispatched in a transaction of its own: a first publish, after commit."""
    with transaction(factory) as session:
        mark_dispatched(session, cert_id)


# Batched dispatch marks (app/services/dispatch.py, DispatchMarks): fill rows not claimed yet
# (or cancelled while queued); and where the first claim came before the batch (its
# fallback `coalesce(dispatched_at, now())` wrote the claim time), put the real publish time
# back. Never touch a row put back in the queue: a released job is `retrying` at attempt 0
# again, a failed one `retrying` at 1, both with dispatched_at NULL for the sweeper. Rows a
# worker holds (claiming, finishing) are skipped, not waited for: the claim writes its own
# time there, and a batch must never queue behind (or in front of) a job.
# The rows are locked once, in a MATERIALIZED CTE: as a subquery of the UPDATE, a planner
# that thought the table tiny (a fresh one, not analyzed yet) re-ran it, locking the batch's
# rows again, for every row it scanned: 10-60 ms of Postgres per batch in bench e2e.
MARK_SQL = text(
    "WITH locked AS MATERIALIZED (SELECT id FROM certifications "
    "WHERE id = ANY(CAST(:ids AS uuid[])) FOR UPDATE SKIP LOCKED) "
    "UPDATE certifications AS c SET dispatched_at = m.at "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:ats AS timestamptz[])) AS m(id, at) "
    "WHERE c.id = m.id AND c.id IN (SELECT id FROM locked) "
    "AND ((c.attempt = 0 AND c.status IN ('queued', 'cancelled') "
    "AND c.dispatched_at IS NULL) "
    "OR (c.attempt = 1 AND c.status NOT IN ('queued', 'retrying') "
    "AND c.dispatched_at > m.at))"
)
# A batch is a few dozen rows found by primary key, whatever the table's statistics say:
# a fresh table not analyzed yet looks like one page to the planner, which then scans it
# all (twice per batch) as it grows, 5 ms a batch a few thousand jobs in (bench e2e).
INDEX_ONLY = text("SET LOCAL enable_seqscan = off")


def mark_published_at(
    factory: sessionmaker[Session], batch: Sequence[tuple[uuid.UUID, datetime]]
) -> None:
    """A batch of (job, publish time) marks, in one transaction (MARK_SQL)."""
    with transaction(factory) as session:
        session.execute(INDEX_ONLY)
        session.execute(
            MARK_SQL, {"ids": [str(i) for i, _ in batch], "ats": [at for _, at in batch]}
        )


# --- The sweeper's statements (app/services/sweeper.py, beat) -----------------------------

SWEEP_LOCK = 0x6D6F64656C  # pg advisory lock key: one sweeper at a time


def lock_for_sweep(session: Session) -> bool:
    """Take the sweep's advisory lock for this transaction; False when another sweep holds it."""
    return bool(session.scalar(text(f"SELECT pg_try_advisory_xact_lock({SWEEP_LOCK})")))


def expire_leases(session: Session) -> tuple[int, int]:
    """Jobs whose worker stopped renewing its lease: back to the queue (`expire_lease`), or
    failed and dead-lettered on their last attempt (`expire_exhausted`). Returns how many of
    each: (requeued, dead-lettered)."""
    requeued = session.execute(
        update(Certification)
        .where(
            Certification.status.in_(lifecycle.EXPIRE_LEASE.sources),
            Certification.lease_until < func.now(),
            Certification.attempt < Certification.max_attempts,
        )
        .values(
            status=lifecycle.EXPIRE_LEASE.target,
            lease_until=None,
            dispatched_at=None,
            next_attempt_at=func.now(),
            error_cause="lease_expired",
            error_message="the worker stopped renewing its lease (killed or lost)",
        )
        .returning(Certification.id)
    ).all()
    exhausted = session.execute(
        update(Certification)
        .where(
            Certification.status.in_(lifecycle.EXPIRE_EXHAUSTED.sources),
            Certification.lease_until < func.now(),
            Certification.attempt >= Certification.max_attempts,
        )
        .values(
            status=lifecycle.EXPIRE_EXHAUSTED.target,
            lease_until=None,
            finished_at=func.now(),
            error_cause="lease_expired",
            error_message="the worker was lost on every attempt (poison job?)",
        )
        .returning(Certification.id, Certification.organization_id, Certification.attempt)
    ).all()
    for cert_id, org_id, attempts in exhausted:
        letter = Letter(org_id, "lease_expired", "the worker was lost on every attempt", attempts)
        _ended(session, cert_id, dead_letter=letter)
    return len(requeued), len(exhausted)


def due_for_publish(
    session: Session, *, publish_grace_seconds: float, lost_after_seconds: float, batch: int
) -> Sequence[Row[uuid.UUID, str, Priority, datetime | None]]:
    """Waiting jobs due a message (id, queue, priority, dispatched_at), oldest first, locked
    for this transaction: never dispatched (after a grace for the API's own publish), or
    dispatched more than `lost_after_seconds` ago and still waiting."""
    return session.execute(
        select(
            Certification.id,
            Certification.queue,
            Certification.priority,
            Certification.dispatched_at,
        )
        .where(
            Certification.status.in_(lifecycle.CLAIMABLE_STATUSES),
            or_(
                Certification.next_attempt_at.is_(None),
                Certification.next_attempt_at <= func.now(),
            ),
            or_(
                Certification.dispatched_at.is_(None),
                Certification.dispatched_at < func.now() - timedelta(seconds=lost_after_seconds),
            ),
            Certification.created_at < func.now() - timedelta(seconds=publish_grace_seconds),
        )
        .order_by(Certification.created_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()


def waiting_low_priority(
    session: Session, aging_seconds: float, batch: int
) -> Sequence[Row[uuid.UUID, str]]:
    """Low-priority waiting jobs (id, queue) dispatched more than `aging_seconds` ago, oldest
    first, locked for this transaction."""
    return session.execute(
        select(Certification.id, Certification.queue)
        .where(
            Certification.status.in_(lifecycle.CLAIMABLE_STATUSES),
            Certification.priority == Priority.LOW,
            Certification.dispatched_at.is_not(None),
            Certification.dispatched_at < func.now() - timedelta(seconds=aging_seconds),
            or_(
                Certification.next_attempt_at.is_(None),
                Certification.next_attempt_at <= func.now(),
            ),
        )
        .order_by(Certification.created_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()


# --- Operator actions (app/services/control.py) -------------------------------------------


def request_cancel(session: Session, cert_id: uuid.UUID) -> bool:
    """Ask the worker running the job to stop it (`stop`, at its next sample boundary);
    False when the job is not running."""
    row = session.execute(
        update(Certification)
        .where(Certification.id == cert_id, Certification.status == JobStatus.RUNNING)
        .values(cancel_requested_at=func.coalesce(Certification.cancel_requested_at, func.now()))
        .returning(Certification.id)
    ).first()
    return row is not None


def status_of(session: Session, cert_id: uuid.UUID) -> JobStatus | None:
    return session.scalar(select(Certification.status).where(Certification.id == cert_id))


def target_deleted_at(session: Session, cert_id: uuid.UUID) -> datetime | None:
    """When the job's target was deleted (None: it was not)."""
    return session.scalar(
        select(Target.deleted_at)
        .join(Certification, Certification.target_id == Target.id)
        .where(Certification.id == cert_id)
    )


def requeue(session: Session, cert_id: uuid.UUID, more_attempts: int) -> bool:
    """The `requeue` transition: a job that ended unsuccessfully is queued again with
    `more_attempts` attempts to go, and its dead letters are marked replayed. False when the
    job had not ended that way."""
    row = session.execute(
        update(Certification)
        .where(Certification.id == cert_id, Certification.status.in_(lifecycle.REQUEUE.sources))
        .values(
            status=lifecycle.REQUEUE.target,
            max_attempts=Certification.attempt + more_attempts,
            finished_at=None,
            lease_until=None,
            dispatched_at=None,
            next_attempt_at=None,
            cancel_requested_at=None,
            error_cause=None,
            error_message=None,
            verdict=None,
            score=None,
        )
        .returning(Certification.id)
    ).first()
    if row is None:
        return False
    session.execute(
        update(DeadLetter)
        .where(DeadLetter.certification_id == cert_id, DeadLetter.replayed_at.is_(None))
        .values(replayed_at=func.now())
    )
    return True


def routing_of(factory: sessionmaker[Session], cert_id: uuid.UUID) -> tuple[str, Priority]:
    """The job's queue and priority (to publish its message)."""
    with factory() as session:
        queue, priority = session.execute(
            select(Certification.queue, Certification.priority).where(Certification.id == cert_id)
        ).one()
    return queue, priority


def dead_letter_for_update(
    session: Session, letter_id: uuid.UUID, org_id: uuid.UUID
) -> DeadLetter | None:
    """The organization's dead letter, locked for this transaction (a replay)."""
    return session.scalar(
        select(DeadLetter)
        .where(DeadLetter.id == letter_id, DeadLetter.organization_id == org_id)
        .with_for_update()
    )


# --- Creating and reading jobs (app/services/certifications.py, enqueue.py) ---------------

# The POST's inserts, built once (see app/db/base.py table_of), run on the DBAPI cursor.
_INSERT = Hot(insert(_JOBS).returning(*_JOBS.c))
_INSERT_ONCE = Hot(
    insert(_JOBS)
    .on_conflict_do_nothing(index_elements=["organization_id", "idempotency_key"])
    .returning(*_JOBS.c)
)


def insert_job(session: Session | Connection, values: Mapping[str, object], *, once: bool) -> Any:
    """A new job's row (all its columns), in the caller's transaction. `once`: it has an
    idempotency key, and a job with that key makes this insert nothing (None); a concurrent
    insert with it makes this wait for its commit."""
    return (_INSERT_ONCE if once else _INSERT).on(session, values)


def insert_queued(
    session: Session, values: Mapping[str, object], idempotency_key: str, request_hash: str
) -> Row[uuid.UUID, str] | None:
    """A job the system queues (re-certification, fingerprint change): its (id, queue), or
    None when its idempotency key was used already."""
    return session.execute(
        insert(Certification)
        .values(
            **values,
            idempotency_key=idempotency_key[:255],
            request_hash=request_hash,
        )
        .on_conflict_do_nothing(index_elements=["organization_id", "idempotency_key"])
        .returning(Certification.id, Certification.queue)
    ).first()


def active_exists(
    session: Session, target_id: uuid.UUID, region: str | None, suite_name: str
) -> bool:
    """Whether a job of this target, region and suite has not ended yet."""
    region_match = (
        Certification.region.is_(None) if region is None else Certification.region == region
    )
    return bool(
        session.scalar(
            select(
                exists().where(
                    Certification.target_id == target_id,
                    region_match,
                    Certification.suite_name == suite_name,
                    Certification.status.in_(lifecycle.ACTIVE_STATUSES),
                )
            )
        )
    )


def by_idempotency_key(
    session: Session | Connection, org_id: uuid.UUID, key: str
) -> Row[Any] | None:
    return session.execute(
        select(_JOBS).where(_c.organization_id == org_id, _c.idempotency_key == key)
    ).first()


def load(session: Session, org_id: uuid.UUID, cert_id: uuid.UUID) -> Certification | None:
    """The organization's job (None for another organization's)."""
    return session.scalar(
        select(Certification).where(
            Certification.id == cert_id, Certification.organization_id == org_id
        )
    )


def checks_of(
    session: Session | Connection, ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[Row[Any]]]:
    """The checks of each job, as rows of check_results in the order they finished (read
    through a Session or a bare Connection alike: the POST's transaction is a Connection,
    see app/api/factory.py)."""
    grouped: dict[uuid.UUID, list[Row[Any]]] = {i: [] for i in ids}
    if ids:
        rows = session.execute(
            select(_CHECKS)
            .where(_CHECKS.c.certification_id.in_(ids))
            .order_by(_CHECKS.c.created_at)
        )
        for row in rows:
            grouped[row.certification_id].append(row)
    return grouped


def listing(
    org_id: uuid.UUID,
    *,
    status: JobStatus | None = None,
    verdict: str | None = None,
    target_id: uuid.UUID | None = None,
    since: datetime | None = None,
) -> Select[Certification]:
    """The organization's jobs, filtered, for pagination.page to run a page of."""
    stmt = select(Certification).where(Certification.organization_id == org_id)
    if status:
        stmt = stmt.where(Certification.status == status)
    if verdict:
        stmt = stmt.where(Certification.verdict == verdict)
    if target_id:
        stmt = stmt.where(Certification.target_id == target_id)
    if since:
        stmt = stmt.where(Certification.created_at >= since)
    return stmt


# --- A job's results and evidence, read (results.py, reports.py, fingerprint.py) ----------


def check_rows(session: Session, cert_id: uuid.UUID) -> list[CheckResultRow]:
    """The job's check results, in the order they finished (then by name)."""
    return list(
        session.scalars(
            select(CheckResultRow)
            .where(CheckResultRow.certification_id == cert_id)
            .order_by(CheckResultRow.created_at, CheckResultRow.check_name)
        )
    )


def samples_streamed(
    factory: sessionmaker[Session], cert_id: uuid.UUID, batch: int
) -> Iterator[SampleRow]:
    """The job's samples in the evidence stream's order, `batch` rows at a time from a
    server-side cursor (yield_per): memory stays flat for any evidence size."""
    with factory() as session:
        yield from session.execute(
            select(SampleRow)
            .where(SampleRow.certification_id == cert_id)
            .order_by(SampleRow.id)
            .execution_options(yield_per=batch)
        ).scalars()


def samples_of(cert_id: uuid.UUID, check: str | None = None) -> Select[SampleRow]:
    """The job's samples (of one check), for pagination.page_in_order to run a page of."""
    query = select(SampleRow).where(SampleRow.certification_id == cert_id)
    if check is not None:
        query = query.where(SampleRow.check_name == check)
    return query


def worst_samples(session: Session, cert_id: uuid.UUID, limit: int) -> list[SampleRow]:
    """Up to `limit` of the job's samples, failed ones first, then errored, then the rest."""
    return list(
        session.scalars(
            select(SampleRow)
            .where(SampleRow.certification_id == cert_id)
            .order_by(
                case((SampleRow.grade == "fail", 0), (SampleRow.grade == "error", 1), else_=2),
                SampleRow.id,
            )
            .limit(limit)
        ).all()
    )


def sample_count(session: Session, cert_id: uuid.UUID) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(SampleRow).where(SampleRow.certification_id == cert_id)
        )
        or 0
    )


_EXCERPTS = ahead(
    select(_SAMPLES.c.response_excerpt)
    .where(
        _SAMPLES.c.certification_id == bindparam("job_id"),
        _SAMPLES.c.check_name.in_(bindparam("names", expanding=True)),
        _SAMPLES.c.status_code == 200,
        _SAMPLES.c.response_excerpt.is_not(None),
    )
    # The unique constraint's order: without it a plan may return the rows in any order.
    .order_by(_SAMPLES.c.check_name, _SAMPLES.c.sample_index),
    job_id=NO_ROW,
    names=["connectivity"],
)


def answered_excerpts(
    session: Session, cert_id: uuid.UUID, check_names: Sequence[str]
) -> list[str]:
    """The response excerpts of the samples of these checks answered with 200, by check name
    and sample index."""
    return list(session.scalars(_EXCERPTS, {"job_id": cert_id, "names": list(check_names)}))


def exists_for(session: Session, org_id: uuid.UUID, cert_id: uuid.UUID) -> bool:
    """Whether the job is the organization's."""
    found = session.scalar(
        select(Certification.id).where(
            Certification.id == cert_id, Certification.organization_id == org_id
        )
    )
    return found is not None


def latest_with_target_name(
    session: Session, org_id: uuid.UUID, limit: int
) -> Sequence[Row[Certification, str]]:
    """The organization's latest jobs, newest first, each with its target's name."""
    return session.execute(
        select(Certification, Target.name)
        .join(Target, Target.id == Certification.target_id)
        .where(Certification.organization_id == org_id)
        .order_by(Certification.created_at.desc(), Certification.id.desc())
        .limit(limit)
    ).all()


def dead_letters_of(org_id: uuid.UUID) -> Select[DeadLetter]:
    """The organization's dead letters, for pagination.page to run a page of."""
    return select(DeadLetter).where(DeadLetter.organization_id == org_id)


# --- The worker's readiness probe (worker/probes.py) -------------------------------------

# How long the oldest job not started yet has waited, for the queue-delay alert. Text, run
# on a probe's own short-lived connection.
_WAITING = ", ".join(f"'{s.value}'" for s in lifecycle.CLAIMABLE_STATUSES)
_OLDEST_WAITING = text(
    "SELECT EXTRACT(EPOCH FROM now() - min(created_at)) FROM certifications "
    f"WHERE status IN ({_WAITING})"
)


def oldest_waiting_seconds(conn: Connection) -> float:
    """Seconds since the oldest waiting job (queued or retrying) was created; 0 when none."""
    return float(conn.execute(_OLDEST_WAITING).scalar() or 0.0)
