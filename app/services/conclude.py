"""A job's success: the one ending path of a succeeded certification (`succeed`).

It decides the verdict from the stored checks, signs the certificate, and writes the
terminal state with both. The fast path: a first delivery's success in one statement, one
round trip, no BEGIN or COMMIT (`first_delivery`).

The usual end of a job: its first delivery ran every check, stored each one it finished
but the last, and succeeded. Everything the end writes is known before the statement (the
last check, the verdict decided from what this delivery stored, the signed certificate), so
one statement writes it all, each data-modifying CTE gated on the terminal UPDATE: the
terminal state, the last check with its samples, the certificate, the certificate it
replaces, the target's endpoint fingerprint. A statement is atomic on its own.

When the end needs more than that statement, it does not run and `succeed` ends the job in
a transaction (jobs.finish), as it does for a redelivery: a webhook would hear of the job
(its delivery rows are written by events), or a current certificate of the target was seen
with another fingerprint (it is superseded and its suite queued again, certificates.issue).
The terminal UPDATE carries both conditions, so the statement then changes nothing and says
so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session, sessionmaker

from app.certification.results import CheckResult, Verdict
from app.certification.scoring import decide_verdict, overall_score
from app.config import Settings
from app.db import certificates as certificate_rows
from app.db import jobs
from app.db.lifecycle import JobStatus
from app.services import certificates, fingerprint, signing
from app.services.enqueue import Queued
from app.services.signing import Signer

# The job's parts are the jobs repository's; the certificate's (issued, and the one it
# replaces) are the certificates repository's `issuing`, written only if the job's end was.
_STATEMENT = jobs.succeed_in_one(
    certificate_rows.STALE_EXIST,
    certificate_rows.issuing,
    **certificate_rows.ISSUING_NO_ROW,
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
    row = jobs.end_in_one(factory, _STATEMENT, params)
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


@dataclass
class Success:
    """How a succeeded delivery ended: `done` False when the job was no longer ours (nothing
    written), the verdict, and the certifications queued to publish after commit."""

    done: bool
    verdict: Verdict | None = None
    follow_ups: list[Queued] = field(default_factory=list)


def succeed(
    factory: sessionmaker[Session],
    settings: Settings,
    signer: Signer,
    claim: jobs.Claim,
    subject: certificates.Subject,
    kept: Sequence[jobs.Stored | None],
    last: CheckResult | None,
    secrets: tuple[str, ...],
) -> Success:
    """End a delivery that ran the suite to its end: verdict, certificate and terminal state
    together. `kept`: what it checkpointed (None where a checkpoint found the job no longer
    ours); `last`: the suite's last check, saved with the end."""
    issued_at = datetime.now(UTC).replace(microsecond=0)
    if last is not None and claim.deliveries == 1 and None not in kept:
        signing.ensure_registered(factory, signer)  # the one statement does not register it
        stored = [k for k in kept if k is not None]
        ended = first_delivery(
            factory, settings, signer, claim, subject, stored, last, secrets, issued_at
        )
        if ended is not None:
            return Success(ended[0], ended[1].verdict)
    return _in_a_transaction(
        factory, settings, signer, claim, subject, kept, last, secrets, issued_at
    )


def _in_a_transaction(
    factory: sessionmaker[Session],
    settings: Settings,
    signer: Signer,
    claim: jobs.Claim,
    subject: certificates.Subject,
    kept: Sequence[jobs.Stored | None],
    last: CheckResult | None,
    secrets: tuple[str, ...],
    issued_at: datetime,
) -> Success:
    """The end when the one statement cannot do: a redelivery, a webhook to tell, a current
    certificate seen with another fingerprint (superseded, its suite queued again)."""
    success = Success(False)
    rows: list[Any] = []
    excerpts: dict[str, tuple[str, ...]] | None = None

    def decide_stored(session: Session, final: jobs.Stored | None) -> jobs.Decision:
        nonlocal excerpts
        mine = [*kept, final] if last is not None else list(kept)
        if claim.deliveries == 1 and None not in mine:
            # A first delivery stored every result itself: decide from what it wrote.
            rows.extend(k.row for k in mine if k is not None)
            excerpts = {k.row.check_name: k.excerpts for k in mine if k is not None}
        else:
            rows.extend(jobs.stored_results(session, claim.certification_id))
        return decide(settings, rows, issued_at)

    def issue(session: Session, job: Row[Any], decision: jobs.Decision | None) -> None:
        assert decision is not None
        success.verdict = decision.verdict
        success.follow_ups = certificates.issue(
            session, settings, signer, subject, decision.verdict, issued_at, rows, excerpts
        )

    success.done = jobs.finish(
        factory,
        claim,
        JobStatus.SUCCEEDED,
        decide=decide_stored,
        session_hook=issue,
        final_check=last,
        secrets=secrets,
    )
    return success
