"""A first delivery's success in one statement, one round trip, no BEGIN or COMMIT.

The usual end of a job: its first delivery ran every check, stored each one it finished
but the last, and succeeded. Everything the end writes is known before the statement (the
last check, the verdict decided from what this delivery stored, the signed certificate), so
one statement writes it all, each data-modifying CTE gated on the terminal UPDATE: the
terminal state, the last check with its samples, the certificate, the certificate it
replaces, the target's endpoint fingerprint. A statement is atomic on its own.

When the end needs more than that statement, it does not run and `jobs.finish` does the
work in a transaction: a webhook would hear of the job (its delivery rows are written by
events), or a current certificate of the target was seen with another fingerprint (it is
superseded and its suite queued again, certificates.issue). The terminal UPDATE carries both
conditions, so the statement then changes nothing and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import exists, not_, select
from sqlalchemy.orm import Session, sessionmaker

from app.certification.results import CheckResult
from app.certification.scoring import decide_verdict, overall_score
from app.config import Settings
from app.db.base import NO_ROW, table_of
from app.db.direct import hot
from app.db.models import Certification, JobStatus
from app.db.session import autocommit_engine
from app.services import certificates, events, fingerprint, jobs
from app.services.signing import Signer

_JOBS = table_of(Certification)
_ENDED = jobs.ending(
    not_(events.subscribed(_JOBS.c.organization_id, _JOBS.c.target_id)),
    not_(certificates.STALE_EXIST),
)
_GATE = exists(select(_ENDED.c.id))
_STATEMENT = hot(
    select(
        _GATE.label("ended"), exists(select(_JOBS.c.id).where(jobs.owned_by_claim())).label("ours")
    ).add_cte(*jobs.check_inserted(_GATE), *certificates.issuing(_GATE)),
    job_id=NO_ROW,
    claimed_attempt=0,
    new_status=JobStatus.SUCCEEDED,
    new_verdict=None,
    new_score=None,
    cause=None,
    message=None,
    done=0,
    total=None,
    new_valid_until=None,
    **{f"new_{name}": None for name in jobs.CHECK_COLUMNS},
    samples=[],
    of_target=NO_ROW,
    subject_region=None,
    now=datetime(2000, 1, 1, tzinfo=UTC),
    fingerprint="",
    compare=False,
    is_certified=False,
    subject_suite="",
    certificate_id=NO_ROW,
    new_payload={},
    new_signature="",
    new_key_id="",
    certificate_valid_until=None,
)


def first_delivery(
    factory: sessionmaker[Session],
    settings: Settings,
    signer: Signer,
    claim: jobs.Claim,
    subject: certificates.Subject,
    kept: Sequence[jobs.Stored],
    last: CheckResult,
    secrets: tuple[str, ...],
    issued_at: datetime,
) -> tuple[bool, jobs.Decision] | None:
    """End a first delivery that stored `kept` and holds its `last` check. (True, decision)
    when it succeeded here; (False, decision) when the job was no longer ours (nothing
    written); None when the end needs jobs.finish (nothing written either)."""
    check, final = jobs.check_params(claim, last, secrets)
    stored = [*kept, final]
    rows = [s.row for s in stored]
    decision = decide(settings, rows, issued_at)
    listing = fingerprint.model_listing(
        None, claim.certification_id, rows, {s.row.check_name: s.excerpts for s in stored}
    )
    params = (
        jobs.ending_params(claim, JobStatus.SUCCEEDED, done=last.total, decision=decision)
        | check
        | certificates.certificate_params(
            settings, signer, subject, decision.verdict, issued_at, rows, listing
        )
    )
    row = _STATEMENT.first(autocommit_engine(factory.kw["bind"]), params)
    if row.ended:
        return True, decision
    return None if row.ours else (False, decision)


def decide(settings: Settings, rows: Sequence[Any], issued_at: datetime) -> jobs.Decision:
    """The verdict of a job's stored results; a certified one is valid from `issued_at`."""
    verdict = decide_verdict((r.outcome, r.required) for r in rows)
    score = overall_score(r.statistic for r in rows)
    valid_until = (
        issued_at + timedelta(days=settings.certification_validity_days)
        if verdict.value in certificates.CERTIFIED
        else None
    )
    return jobs.Decision(verdict, score, valid_until)
