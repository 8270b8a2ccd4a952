"""The use case "run a certification": one delivery of a job, from its claim to its end.

    claim (with the job's inputs) → run the suite under a kept lease, checkpointing each
    check → end: succeeded (conclude.succeed), failed (jobs.fail), retrying
    (jobs.schedule_retry), cancelled (jobs.stop) or released (jobs.release); the soft time
    limit's timed_out is jobs.time_out.

The job's statements are the jobs repository's (app/db/jobs.py, one function per transition
of app/db/lifecycle.py); the worker supplies the lease keeping and the event loop
(worker/lease.py, worker/job_loop.py), metrics and the shared rate-limit gate, through
RunHooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from app import redaction
from app.certification.checks import StopRequested, TargetSpec
from app.certification.engine import EngineHooks, JobFailure, planned_samples, run_record
from app.certification.netguard import AddressPolicy, GuardedResolver, guarded_socket_factory
from app.certification.providers.base import EndpointError, Gate
from app.certification.regressions import Baseline
from app.certification.results import CheckResult
from app.certification.runner import JudgeEndpoint, execute
from app.certification.suites import Suite, SuiteError, available_suites
from app.config import Settings
from app.db import jobs
from app.db.lifecycle import JobStatus
from app.db.session import compile_ahead
from app.logging import bind
from app.services import baselines, certificates, conclude, judges, signing, suites
from app.services.enqueue import Queued, publish_queued
from app.services.secrets import SecretBox
from app.services.targets import target_spec

log = logging.getLogger(__name__)


class Lease(Protocol):
    """What a delivery asks of whoever keeps its lease (worker/lease.py): renewals while it
    runs, its live progress, and whether the job was cancelled or taken over meanwhile."""

    cancel_requested: bool
    lost: bool

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def sample_done(self) -> None: ...

    def check_done(self) -> None: ...


@dataclass
class RunHooks:
    """What the worker plugs in: lease keeping, the event loop, metrics, the shared rate-limit
    gate, the shutdown flag."""

    lease: Callable[[jobs.Claim], Lease]
    run_async: Callable[[Coroutine[Any, Any, Any]], Any] = asyncio.run
    shutting_down: Callable[[], bool] = lambda: False
    on_response: Callable[[str, float], None] | None = None
    on_retry: Callable[[EndpointError], None] | None = None
    on_finished: Callable[[str, str | None, float | None], None] = lambda s, v, d: None
    # A job-level outcome by cause: "retry" (scheduled again) or "dead_letter" (exhausted).
    on_job_retry: Callable[[str, str], None] = lambda kind, cause: None
    # The target's gate (rate and concurrency limit shared by every worker), or None: none.
    gate_factory: Callable[[TargetSpec], Gate | None] | None = None
    # Where DNS answers come from (default: aiohttp's threaded resolver); the SSRF guard
    # always wraps it, see network_guard().
    resolver_factory: Callable[[], object] | None = None
    # Gives a judge endpoint the worker's gate (shared rate limit) and metrics.
    judge_endpoint: Callable[[JudgeEndpoint], JudgeEndpoint] | None = None
    # Publishes follow-up jobs (fingerprint change) after commit; else the sweeper does.
    publish: Callable[[uuid.UUID, str, str], bool] | None = None


def run_certification(
    factory: sessionmaker[Session],
    settings: Settings,
    cert_id: str,
    worker_name: str,
    hooks: RunHooks,
) -> str:
    """One delivery of a job. Returns what happened, for the log."""
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
    delivery = Delivery(factory, settings, claim, hooks)
    delivery.lease.start()
    try:
        if isinstance(prepared, JobFailure):
            raise prepared
        delivery.run(prepared)
    except StopRequested:
        return delivery.stopped()
    except JobFailure as failure:
        return delivery.failed(failure)
    except BaseException:  # a bug, the soft time limit: keep the evidence if we can
        delivery.keep_evidence()
        raise
    finally:
        delivery.lease.stop()
    return delivery.succeeded(prepared)


@dataclass
class Delivery:
    """One delivery's state: what it stored, the last check it holds, the job's secret."""

    factory: sessionmaker[Session]
    settings: Settings
    claim: jobs.Claim
    hooks: RunHooks
    lease: Lease = field(init=False)
    secrets: tuple[str, ...] = ()
    # The suite's last check is not checkpointed on its own: it is saved with the end (one
    # commit fewer per job). Any other way out saves it.
    held: list[CheckResult] = field(default_factory=list)
    # What this delivery stored, in order (None: a checkpoint found the job no longer ours).
    kept: list[jobs.Stored | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lease = self.hooks.lease(self.claim)

    def run(self, prepared: Prepared) -> None:
        """The suite against the endpoint; concurrency, timeouts and retries come from the
        suite (engine.run_conditions), within the target's declared maximum, as in the CLI."""
        keys = (prepared.api_key, *(j.api_key for j in prepared.judges.values()))
        self.secrets = tuple(k for k in keys if k)
        redaction.remember(self.secrets)  # and from this process's log lines
        checks = prepared.suite.definition.checks
        last = checks[-1].key if checks else None

        def on_check_finished(result: CheckResult) -> None:
            self.lease.check_done()
            if result.name == last:
                self.held.append(result)
            else:
                self.kept.append(self.checkpoint(result))

        engine_hooks = EngineHooks(
            completed=prepared.completed,
            stopped=prepared.stopped,
            on_check_finished=on_check_finished,
            should_stop=self.should_stop,
            on_sample=self.lease.sample_done,
        )
        gate = self.hooks.gate_factory(prepared.spec) if self.hooks.gate_factory else None
        kwargs: dict[str, Any] = {"gate": gate} if gate else {}
        kwargs |= network_guard(self.settings, self.hooks)
        decorate = self.hooks.judge_endpoint or (lambda judge: judge)
        kwargs["judges"] = {name: decorate(j) for name, j in prepared.judges.items()}
        self.hooks.run_async(
            execute(
                prepared.suite,
                prepared.spec,
                prepared.api_key,
                engine_hooks,
                on_response=self.hooks.on_response,
                on_retry=self.hooks.on_retry,
                baseline=prepared.baseline,
                **kwargs,
            )
        )

    def should_stop(self) -> bool:
        return self.lease.cancel_requested or self.lease.lost or self.hooks.shutting_down()

    def checkpoint(self, result: CheckResult) -> jobs.Stored | None:
        stored = jobs.save_check(self.factory, self.claim, result, self.secrets)
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

    def save_held(self) -> None:
        while self.held:
            self.kept.append(self.checkpoint(self.held.pop()))

    def keep_evidence(self) -> None:
        with contextlib.suppress(Exception):
            self.save_held()

    def stopped(self) -> str:
        """Stopped at a sample boundary: cancelled, taken over, or given back (shutdown)."""
        self.lease.stop()
        self.save_held()
        if self.lease.cancel_requested:
            jobs.stop(self.factory, self.claim)
            self.hooks.on_finished("cancelled", None, None)
            return "cancelled"
        if self.lease.lost:
            return "lease_lost"
        jobs.release(self.factory, self.claim)
        return "released"

    def failed(self, failure: JobFailure) -> str:
        """Retry with backoff by cause, or fail at once; exhausted retries dead-letter."""
        self.lease.stop()
        self.save_held()
        message = redaction.redact(failure.message, self.secrets) or failure.cause
        if not failure.retryable:
            jobs.fail(self.factory, self.claim, failure.cause, message)
            self.hooks.on_finished("failed", None, None)
            return "failed"
        delay = backoff_seconds(self.claim.attempt, retry_after=failure.retry_after)
        status = jobs.schedule_retry(self.factory, self.claim, failure.cause, message, delay)
        if status is JobStatus.FAILED:
            self.hooks.on_job_retry("dead_letter", failure.cause)
            self.hooks.on_finished("failed", None, None)
        else:
            self.hooks.on_job_retry("retry", failure.cause)
        return status.value

    def succeeded(self, prepared: Prepared) -> str:
        """The suite ran to its end: verdict, certificate and terminal state together."""
        spec, claim = prepared.spec, self.claim
        subject = certificates.Subject(
            job_id=claim.certification_id,
            target_id=claim.target_id,
            target_name=prepared.target_name,
            provider=spec.provider,
            model=spec.model,
            endpoint=spec.base_url,
            region=claim.region,
            suite_name=claim.suite_name,
            suite_version=claim.suite_version,
            suite_hash=claim.suite_hash,
            run=run_record(prepared.suite, spec, "worker", prepared.baseline),
        )
        last = self.held.pop() if self.held else None
        success = conclude.succeed(
            self.factory,
            self.settings,
            signing.signer_for(self.settings),
            claim,
            subject,
            self.kept,
            last,
            self.secrets,
        )
        if not success.done:
            return "lease_lost"
        verdict = success.verdict.value if success.verdict else None
        self.hooks.on_finished("succeeded", verdict, None)
        self.publish(success.follow_ups)
        return "succeeded"

    def publish(self, queued: list[Queued]) -> None:
        for item in queued:
            log.info(
                "certification_queued",
                extra={"queued_id": str(item.id), "reason": "fingerprint_change"},
            )
        if self.hooks.publish is not None:
            publish_queued(self.factory, self.hooks.publish, queued)  # a miss: the sweeper's


@dataclass(frozen=True)
class Prepared:
    suite: Suite
    spec: TargetSpec
    api_key: str | None
    completed: set[str]
    planned: int  # samples the suite will send to this target (progress total)
    target_name: str = ""
    stopped: str | None = None  # why an earlier delivery stopped the run (model_not_listed)
    judges: Mapping[str, JudgeEndpoint] = field(default_factory=dict)  # the suite's judges
    baseline: Baseline | None = None  # the target's last certified result (services.baselines)


def claim_and_prepare(
    factory: sessionmaker[Session], settings: Settings, job_id: uuid.UUID, worker_name: str
) -> tuple[jobs.Claim, Prepared | JobFailure] | None:
    """The claim and the job's inputs (target, secret) in one statement and one round trip,
    its own transaction; then, only when an earlier delivery ran, the checks it completed.
    None when there is nothing to claim.

    A JobFailure while preparing (target or secret deleted, suite gone) is returned, not
    raised: the claim is committed and the caller fails the job it owns.
    """
    row = jobs.claim_with_inputs(factory, job_id, worker_name, settings.certification_lease_seconds)
    if row is None:
        jobs.settle_unclaimable(factory, job_id)
        return None
    completed: set[str] = set()
    stopped: str | None = None
    if row.delivery_count > 1:  # what an earlier delivery completed
        completed, stopped = jobs.resume_point(factory, job_id)
    claim = jobs.claim_from(row)
    try:
        try:  # a team's suite: the very content the job was created with (issue #23)
            suite = suites.for_job(
                factory, settings, claim.organization_id, claim.suite_name, claim.suite_hash
            )
        except SuiteError as exc:
            raise JobFailure("invalid_target", str(exc), retryable=False) from None
        prepared = prepare(settings, row, suite)
        bound = judges.load(  # the judge targets a suite with a `judge` grader names
            factory, job_id, claim.organization_id, suite, lambda c: decrypt_secret(settings, c)
        )
    except JobFailure as failure:
        return claim, failure
    prepared.completed.update(completed)
    return replace(claim, planned=prepared.planned), replace(
        prepared, stopped=stopped, judges=bound, baseline=baselines.from_claim(row.baseline)
    )


def prepare(settings: Settings, inputs: Any, suite: Suite) -> Prepared:
    """The endpoint and the API key of a job, from its `_INPUTS` row, with its suite."""
    if inputs.deleted_at is not None or inputs.provider is None:
        raise JobFailure("invalid_target", "the target was deleted", retryable=False)
    spec = target_spec(inputs, inputs.region)
    api_key = None
    if inputs.secret_id is not None:
        if inputs.secret_ciphertext is None:
            raise JobFailure("invalid_target", "the target's secret was deleted", retryable=False)
        api_key = decrypt_secret(settings, inputs.secret_ciphertext)
    return Prepared(suite, spec, api_key, set(), planned_samples(suite, spec), inputs.name)


def backoff_seconds(
    attempt: int, base: float = 5.0, cap: float = 300.0, retry_after: float | None = None
) -> float:
    """Exponential backoff with full jitter, never sooner than Retry-After."""
    delay = random.uniform(0, min(cap, base * (2 ** max(0, attempt - 1))))
    return max(delay, retry_after or 0.0)


def warm_up(factory: sessionmaker[Session], settings: Settings) -> int:
    """In the worker's main process, before it forks its pool: load the suites, register
    the signing keys and compile the job path's statements, so that every child (a recycled
    one too) starts its first job as fast as its hundredth. A fresh child's first job took
    about 60 ms against 10, and with children recycled every WORKER_MAX_TASKS_PER_CHILD jobs
    that was the whole p99 of bench dispatch_latency. Returns the statements compiled."""
    available_suites()
    if settings.modelcert_signing_key is not None or settings.modelcert_env != "production":
        # (a worker on the maintenance queue alone runs in production without the key)
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


def time_out(factory: sessionmaker[Session], claim_id: str) -> None:
    """Soft time limit: mark the running job timed_out, keeping what it stored."""
    jobs.time_out(factory, uuid.UUID(claim_id))


__all__ = ["Lease", "RunHooks", "run_certification", "time_out"]
