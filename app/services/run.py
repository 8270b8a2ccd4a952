"""run_certification: claim, run the engine with a kept lease, checkpoint, finish once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Row, select
from sqlalchemy.orm import Session, sessionmaker

from app import redaction
from app.certification.checks import StopRequested, TargetSpec
from app.certification.engine import EngineHooks, JobFailure, planned_samples, run_record
from app.certification.netguard import AddressPolicy, GuardedResolver, guarded_socket_factory
from app.certification.providers.base import EndpointError
from app.certification.results import CheckOutcome, CheckResult, Verdict
from app.certification.runner import execute
from app.certification.suites import Suite, SuiteError, available_suites, get_suite
from app.config import Settings
from app.db.base import NO_ROW, table_of
from app.db.direct import hot
from app.db.models import Certification, JobStatus, Secret, Target
from app.db.session import autocommit, autocommit_engine, compile_ahead, transaction
from app.logging import bind
from app.services import certificates, conclude, jobs, signing
from app.services.conclude import decide
from app.services.enqueue import Queued, publish_queued
from app.services.secrets import SecretBox
from app.services.targets import target_spec

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class RunHooks:
    """What the worker plugs in: metrics, shared rate-limit gate, shutdown flag."""

    shutting_down: Callable[[], bool] = lambda: False
    on_response: Callable[[str, float], None] | None = None
    on_retry: Callable[[EndpointError], None] | None = None
    on_finished: Callable[[str, str | None, float | None], None] = lambda s, v, d: None
    # A job-level outcome by cause: "retry" (scheduled again) or "dead_letter" (exhausted).
    on_job_retry: Callable[[str, str], None] = lambda kind, cause: None
    gate_factory: Callable[[TargetSpec], Callable] | None = None  # type: ignore[type-arg]
    # Where DNS answers come from (default: aiohttp's threaded resolver); the SSRF guard
    # always wraps it, see network_guard().
    resolver_factory: Callable[[], object] | None = None
    # Publishes follow-up jobs (fingerprint change) after commit; else the sweeper does.
    publish: Callable[[uuid.UUID, str, str], bool] | None = None


@dataclass(eq=False)
class LeaseKeeper:
    """Renews a job's lease every few seconds and notices a cancel or a lost claim.

    The renewals run on one thread per process (`_Renewer`), not one per job: starting and
    joining a thread per job cost about 1 ms of wall time on a busy 2-core machine, a tenth
    of a short job. After stop() returns, no renewal of this job will start, and one under
    way has ended (or hung on the database for 5 s).
    """

    factory: sessionmaker[Session]
    claim: jobs.Claim
    lease_seconds: int
    interval: float = 2.0
    cancel_requested: bool = False
    lost: bool = False
    # Samples finished in the check under way (the engine's thread counts, the renewal
    # thread reads: a plain int is enough, a renewal a moment stale is harmless).
    running: int = 0

    def sample_done(self) -> None:
        self.running += 1

    def check_done(self) -> None:
        self.running = 0

    def start(self) -> None:
        _RENEWER.watch(self)

    def stop(self) -> None:
        _RENEWER.unwatch(self)

    def renew(self) -> bool:
        """One renewal; False when there is nothing more to renew (lost or cancelled)."""
        try:
            ours, cancel = jobs.renew_lease(
                self.factory, self.claim, self.lease_seconds, self.running
            )
        except Exception:  # noqa: BLE001 - a DB blip: the lease has slack, try again
            log.warning("lease_renewal_failed", exc_info=True)
            return True
        self.lost = not ours
        self.cancel_requested = cancel
        return not (self.lost or cancel)


IDLE_WAKE = 0.5  # seconds; below any lease interval a job normally uses (2 s)


class _Renewer:
    """The thread that renews the leases of the jobs this process runs, each when it is due."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:  # also in a forked child: the parent's thread and lock stay there
        self._cond = threading.Condition()
        self._due: dict[LeaseKeeper, float] = {}
        self._renewing: LeaseKeeper | None = None
        self._thread: threading.Thread | None = None
        # When the thread next looks at the due times (it is busy or starting: no later
        # than now). A job whose first renewal is due after that needs no wake-up call.
        self._wake_at = 0.0

    def watch(self, keeper: LeaseKeeper) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="lease-renewer", daemon=True
                )
                self._wake_at = 0.0  # it looks at the due times before it first waits
                self._thread.start()
            due = time.monotonic() + keeper.interval
            self._due[keeper] = due
            if due < self._wake_at:  # else the thread looks at the due times sooner anyway
                self._cond.notify_all()

    def unwatch(self, keeper: LeaseKeeper, timeout: float = 5.0) -> None:
        """Stops renewing; waits (up to `timeout`: a hung database) for a renewal under way."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._due.pop(keeper, None)
            while self._renewing is keeper and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)

    def _loop(self) -> None:
        while True:
            with self._cond:
                keeper = self._next_due()
                self._renewing = keeper
            keep = keeper.renew()
            with self._cond:
                self._renewing = None
                if keeper in self._due:
                    if keep:
                        self._due[keeper] = time.monotonic() + keeper.interval
                    else:
                        del self._due[keeper]
                self._cond.notify_all()

    def _next_due(self) -> LeaseKeeper:
        """Waits (holding the condition) until a watched job's renewal is due. With nothing
        watched it still looks every IDLE_WAKE seconds, so a job that starts (its first
        renewal due an interval later) need not wake it: on a busy worker that wake-up, a
        thread switch per job, cost more than the rest of the lease keeping."""
        while True:
            now = time.monotonic()
            if self._due:
                keeper, due = min(self._due.items(), key=lambda item: item[1])
                if due <= now:
                    self._wake_at = 0.0
                    return keeper
                self._wake_at = due
                self._cond.wait(due - now)
            else:
                self._wake_at = now + IDLE_WAKE
                self._cond.wait(IDLE_WAKE)


_RENEWER = _Renewer()
os.register_at_fork(after_in_child=_RENEWER._reset)


class _JobLoop:
    """The event loop the jobs of this process (of each of its threads) run on, one after
    another.

    asyncio.run per job built and tore down a loop each time (its selector, self-pipe, signal
    checks and default executor, whose thread runs DNS lookups): about a tenth of a short
    job's CPU. Each job still opens and closes its own HTTP session; what a job leaves behind
    (tasks not awaited) is cancelled when it ends, and a job that ends by an exception (the
    soft time limit, a bug) takes the loop with it: the next job starts on a fresh one.
    """

    def __init__(self) -> None:
        self._mine = threading.local()

    def forget(self) -> None:  # in a forked child: the parent's selector is not ours to use
        self._mine = threading.local()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop: asyncio.AbstractEventLoop | None = getattr(self._mine, "loop", None)
        if loop is None or loop.is_closed():
            loop = self._mine.loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(coro)
        except BaseException:
            self._mine.loop = None
            with contextlib.suppress(Exception):  # the job's own exception is the one to see
                _cancel_all(loop)
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            raise
        finally:
            if getattr(self._mine, "loop", None) is loop:
                _cancel_all(loop)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio.run's clean-up: cancel the loop's tasks and let them finish."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


_JOB_LOOP = _JobLoop()
os.register_at_fork(after_in_child=_JOB_LOOP.forget)


@dataclass(frozen=True)
class Prepared:
    suite: Suite
    spec: TargetSpec
    api_key: str | None
    completed: set[str]
    planned: int  # samples the suite will send to this target (progress total)
    target_name: str = ""
    stopped: str | None = None  # why an earlier delivery stopped the run (model_not_listed)


def claim_and_prepare(
    factory: sessionmaker[Session], settings: Settings, job_id: uuid.UUID, worker_name: str
) -> tuple[jobs.Claim, Prepared | JobFailure] | None:
    """The claim and the job's inputs (target, secret) in one statement and one round trip,
    its own transaction; then, only when an earlier delivery ran, the checks it completed.
    None when there is nothing to claim.

    A JobFailure while preparing (target or secret deleted, suite gone) is returned, not
    raised: the claim is committed and the caller fails the job it owns.
    """
    params = jobs.claim_params(job_id, worker_name, settings.certification_lease_seconds)
    row = _CLAIM_WITH_INPUTS.first(autocommit_engine(factory.kw["bind"]), params)
    completed: set[str] = set()
    stopped: str | None = None
    if row is not None and row.delivery_count > 1:  # what an earlier delivery completed
        with autocommit(factory) as conn:
            completed = jobs.completed_checks(conn, job_id)
            stopped = jobs.stop_reason(conn, job_id)
    if row is None:
        with transaction(factory) as session:
            jobs.settle_unclaimable(session, job_id)
        return None
    claim = jobs.claim_from(row)
    try:
        prepared: Prepared | JobFailure = prepare(settings, row)
    except JobFailure as failure:
        return claim, failure
    prepared.completed.update(completed)
    return replace(claim, planned=prepared.planned), replace(prepared, stopped=stopped)


_TARGETS, _SECRETS = table_of(Target), table_of(Secret)
# A job's inputs: the target's columns target_spec reads and the secret, beside the claim.
_CLAIM_WITH_INPUTS = hot(
    select(
        jobs.CLAIMED,
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
    ).select_from(
        jobs.CLAIMED.outerjoin(_TARGETS, _TARGETS.c.id == jobs.CLAIMED.c.target_id).outerjoin(
            _SECRETS, _SECRETS.c.id == _TARGETS.c.secret_id
        )
    ),
    job_id=NO_ROW,
    lease=timedelta(0),
    worker_name="",
)


def prepare(settings: Settings, inputs: Any) -> Prepared:
    """The suite, the endpoint and the API key of a job, from its `_INPUTS` row."""
    try:
        suite = get_suite(inputs.suite_name)
    except SuiteError as exc:
        raise JobFailure("invalid_target", str(exc), retryable=False) from None
    if inputs.deleted_at is not None or inputs.provider is None:
        raise JobFailure("invalid_target", "the target was deleted", retryable=False)
    spec = target_spec(inputs, inputs.region)
    api_key = None
    if inputs.secret_id is not None:
        if inputs.secret_ciphertext is None:
            raise JobFailure("invalid_target", "the target's secret was deleted", retryable=False)
        api_key = decrypt_secret(settings, inputs.secret_ciphertext)
    return Prepared(suite, spec, api_key, set(), planned_samples(suite, spec), inputs.name)


def warm_up(factory: sessionmaker[Session], settings: Settings) -> int:
    """In the worker's main process, before it forks its pool: load the suites, register
    the signing keys and compile the job path's statements, so that every child (a recycled
    one too) starts its first job as fast as its hundredth. A fresh child's first job took
    about 60 ms against 10, and with children recycled every WORKER_MAX_TASKS_PER_CHILD jobs
    that was the whole p99 of bench dispatch_latency. Returns the statements compiled."""
    available_suites()
    signing.ensure_registered(factory, signing.signer_for(settings))
    return compile_ahead(factory)


def decrypt_secret(settings: Settings, ciphertext: bytes) -> str:
    try:
        return SecretBox.from_settings(settings).decrypt(ciphertext)
    except (RuntimeError, ValueError) as exc:
        raise JobFailure(
            "invalid_target",
            f"the target's secret cannot be used: {exc}; "
            "check MODELCERT_SECRET_KEY (it must list the key that encrypted it)",
            retryable=False,
        ) from None


def network_guard(settings: Settings, hooks: RunHooks) -> dict[str, object]:
    """SSRF guard for one job: every resolved address and every connected socket is checked."""
    policy = AddressPolicy(allow_private=settings.modelcert_allow_private_targets)
    inner = hooks.resolver_factory() if hooks.resolver_factory else None
    return {
        "resolver": GuardedResolver(policy, inner),  # type: ignore[arg-type]
        "socket_factory": guarded_socket_factory(policy),
    }


def run_certification(
    factory: sessionmaker[Session],
    settings: Settings,
    cert_id: str,
    worker_name: str,
    hooks: RunHooks | None = None,
) -> str:
    """One delivery of a job. Returns what happened, for the log."""
    hooks = hooks or RunHooks()
    try:
        job_id = uuid.UUID(cert_id)
    except ValueError:
        log.error("malformed_certification_id", extra={"value": cert_id[:80]})
        return "rejected"
    claimed = claim_and_prepare(factory, settings, job_id, worker_name)
    if claimed is None:
        return "not_claimable"
    claim, prepared = claimed
    bind(attempt=claim.attempt, target_id=str(claim.target_id))
    log.info(
        "certification_claimed",
        extra={
            "queue": claim.queue,
            "priority": claim.priority,
            "max_attempts": claim.max_attempts,
        },
    )
    keeper = LeaseKeeper(
        factory,
        claim,
        settings.certification_lease_seconds,
        interval=min(2.0, settings.certification_lease_seconds / 3),
    )
    keeper.start()
    secrets: tuple[str, ...] = ()
    # The suite's last check is not checkpointed on its own: it is saved in the transaction
    # that sets the terminal state (one commit fewer per job). Any other way out saves it.
    held: list[CheckResult] = []

    # What this delivery stored, in order (None: a checkpoint found the job no longer ours).
    kept: list[jobs.Stored | None] = []

    def save_held() -> None:
        while held:
            kept.append(_checkpoint(factory, claim, held.pop(), secrets))

    try:
        if isinstance(prepared, JobFailure):
            raise prepared
        suite, spec, api_key = prepared.suite, prepared.spec, prepared.api_key
        target_name = prepared.target_name
        secrets = (api_key,) if api_key else ()
        redaction.remember(secrets)  # and from this process's log lines
        last_check = suite.definition.checks[-1].key if suite.definition.checks else None

        def on_check_finished(result: CheckResult) -> None:
            keeper.check_done()
            if result.name == last_check:
                held.append(result)
            else:
                kept.append(_checkpoint(factory, claim, result, secrets))

        engine_hooks = EngineHooks(
            completed=prepared.completed,
            stopped=prepared.stopped,
            on_check_finished=on_check_finished,
            should_stop=lambda: keeper.cancel_requested or keeper.lost or hooks.shutting_down(),
            on_sample=keeper.sample_done,
        )
        gate = hooks.gate_factory(spec) if hooks.gate_factory else None
        kwargs: dict[str, object] = {"gate": gate} if gate else {}
        kwargs.update(network_guard(settings, hooks))
        # Concurrency, timeouts and retries come from the suite (engine.run_conditions),
        # within the target's declared maximum: the CLI runs the same.
        _JOB_LOOP.run(
            execute(
                suite,
                spec,
                api_key,
                engine_hooks,
                on_response=hooks.on_response,
                on_retry=hooks.on_retry,
                **kwargs,
            )
        )
    except StopRequested:
        keeper.stop()
        save_held()
        if keeper.cancel_requested:
            jobs.finish(
                factory,
                claim,
                JobStatus.CANCELLED,
                cause="cancelled",
                message="cancelled by request; evidence so far is kept",
            )
            hooks.on_finished("cancelled", None, None)
            return "cancelled"
        if keeper.lost:
            return "lease_lost"
        jobs.release(factory, claim)
        return "released"
    except JobFailure as failure:
        keeper.stop()
        save_held()
        message = redaction.redact(failure.message, secrets) or failure.cause
        if failure.retryable:
            delay = jobs.backoff_seconds(claim.attempt, retry_after=failure.retry_after)
            status = jobs.schedule_retry(factory, claim, failure.cause, message, delay)
            if status is JobStatus.FAILED:
                hooks.on_job_retry("dead_letter", failure.cause)
                hooks.on_finished("failed", None, None)
            else:
                hooks.on_job_retry("retry", failure.cause)
            return status.value
        jobs.finish(factory, claim, JobStatus.FAILED, cause=failure.cause, message=message)
        hooks.on_finished("failed", None, None)
        return "failed"
    except BaseException:
        # Unexpected (a bug, the soft time limit): keep the evidence if the database lets us.
        with contextlib.suppress(Exception):
            save_held()
        raise
    finally:
        keeper.stop()
    signer = signing.signer_for(settings)
    issued_at = datetime.now(UTC).replace(microsecond=0)
    subject = certificates.Subject(
        job_id=claim.certification_id,
        target_id=claim.target_id,
        target_name=target_name,
        provider=spec.provider,
        model=spec.model,
        endpoint=spec.base_url,
        region=claim.region,
        suite_name=claim.suite_name,
        suite_version=claim.suite_version,
        suite_hash=claim.suite_hash,
        run=run_record(suite, spec, "worker"),
    )
    final_check = held.pop() if held else None
    if final_check is not None and claim.deliveries == 1 and None not in kept:
        # The usual end: one statement (conclude.py); None when it needs jobs.finish.
        signing.ensure_registered(factory, signer)
        ended = conclude.first_delivery(
            factory,
            settings,
            signer,
            claim,
            subject,
            [k for k in kept if k is not None],
            final_check,
            secrets,
            issued_at,
        )
        if ended is not None:
            done, decision = ended
            if done:
                hooks.on_finished("succeeded", decision.verdict.value, None)
            return "succeeded" if done else "lease_lost"
    follow_ups: list[Queued] = []
    decided: list[Verdict] = []
    stored: list = []  # type: ignore[type-arg]
    excerpts: dict[str, tuple[str, ...]] | None = None

    def decide_stored(session: Session, final: jobs.Stored | None) -> jobs.Decision:
        nonlocal excerpts
        mine = [*kept, final] if final_check is not None else kept
        if claim.deliveries == 1 and None not in mine:
            # A first delivery stored every result itself: decide from what it wrote.
            stored.extend(k.row for k in mine if k is not None)
            excerpts = {k.row.check_name: k.excerpts for k in mine if k is not None}
        else:
            stored.extend(jobs.stored_results(session, claim.certification_id))
        return decide(settings, stored, issued_at)

    def issue(session: Session, job: Row[Any], decision: jobs.Decision | None) -> None:
        assert decision is not None
        decided.append(decision.verdict)
        follow_ups.extend(
            certificates.issue(
                session, settings, signer, subject, decision.verdict, issued_at, stored, excerpts
            )
        )

    # Verdict from the stored checkpoints, then the certificate (and valid_until when certified)
    # in the same transaction as the terminal status.
    done = jobs.finish(
        factory,
        claim,
        JobStatus.SUCCEEDED,
        decide=decide_stored,
        session_hook=issue,
        final_check=final_check,
        secrets=secrets,
    )
    if done:
        hooks.on_finished("succeeded", decided[0].value, None)
        _publish(factory, hooks, follow_ups)
    return "succeeded" if done else "lease_lost"


def _publish(factory: sessionmaker[Session], hooks: RunHooks, queued: list[Queued]) -> None:
    for item in queued:
        log.info(
            "certification_queued",
            extra={"queued_id": str(item.id), "reason": "fingerprint_change"},
        )
    if hooks.publish is not None:
        publish_queued(factory, hooks.publish, queued)  # a miss is the sweeper's


def _checkpoint(
    factory: sessionmaker[Session], claim: jobs.Claim, result: CheckResult, secrets: tuple[str, ...]
) -> jobs.Stored | None:
    stored = jobs.save_check(factory, claim, result, secrets)
    log.info(
        "check_finished",
        extra={
            "check": result.name,
            "outcome": result.outcome.value,
            "passed": result.passed,
            "failed": result.failed,
            "errored": result.errored,
        },
    )
    return stored


def time_out(factory: sessionmaker[Session], claim_id: str) -> None:
    """Soft time limit: mark the running job timed_out, keeping what it stored."""
    from sqlalchemy import func, update

    from app.db.session import transaction
    from app.services import events

    with transaction(factory) as session:
        row = session.execute(
            update(Certification)
            .where(
                Certification.id == uuid.UUID(claim_id), Certification.status == JobStatus.RUNNING
            )
            .values(
                status=JobStatus.TIMED_OUT,
                finished_at=func.now(),
                lease_until=None,
                error_cause="timeout",
                error_message="the certification exceeded CERTIFICATION_TIMEOUT",
            )
            .returning(Certification.id)
        ).first()
        if row is not None:
            events.certification_ended(session, row[0])


__all__ = ["RunHooks", "run_certification", "time_out", "CheckOutcome"]
