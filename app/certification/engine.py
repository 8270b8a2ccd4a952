"""Run a suite against one target: checks in order, each scored and handed back as a checkpoint.

Imports nothing from Flask, Celery or SQLAlchemy; the worker and the CLI both call `run_suite`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from app.certification.checks import CheckContext, StopRequested, TargetSpec
from app.certification.checks.catalog import REGISTRY
from app.certification.providers.base import RETRYABLE_CAUSES, ErrorCause, Provider
from app.certification.results import CheckOutcome, CheckResult, Grade, Sample
from app.certification.scoring import count_grades, outcome_for
from app.certification.suites import CheckEntry, Suite

# Causes that no retry can mend: the job fails at once.
PERMANENT_CAUSES = frozenset(
    {ErrorCause.AUTH_FAILED, ErrorCause.NOT_FOUND, ErrorCause.BLOCKED_ADDRESS,
     ErrorCause.INVALID_TARGET}
)


class JobFailure(Exception):
    """The endpoint could not be certified at all; `retryable` says whether to try again."""

    def __init__(self, cause: str, message: str, retryable: bool,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass
class EngineHooks:
    """How the caller checkpoints and steers a run."""

    completed: set[str] = field(default_factory=set)
    on_check_finished: Callable[[CheckResult], None] = lambda result: None
    should_stop: Callable[[], bool] = lambda: False
    on_sample: Callable[[], None] = lambda: None


def planned_samples(suite: Suite, target: TargetSpec) -> int:
    total = 0
    for entry in suite.definition.checks:
        spec = REGISTRY[entry.name]
        if target.supports(spec.requires):
            total += spec.planned(**entry.params)
    return total


def score(entry: CheckEntry, samples: list[Sample], duration: float, max_error_rate: float,
          details: dict[str, Any] | None = None) -> CheckResult:
    passed, failed, errored = count_grades(samples)
    outcome, rate, lower, upper = outcome_for(passed, failed, errored, entry.threshold,
                                              max_error_rate)
    causes: dict[str, int] = {}
    for sample in samples:
        if sample.error_cause:  # errors, and failures with a protocol cause
            causes[sample.error_cause] = causes.get(sample.error_cause, 0) + 1
    return CheckResult(
        name=entry.key, outcome=outcome, required=entry.required, passed=passed, failed=failed,
        errored=errored, total=len(samples), statistic=rate, threshold=entry.threshold,
        lower=lower, upper=upper, duration_seconds=round(duration, 3),
        details={"check": entry.name, "error_causes": causes, **(details or {})},
        samples=tuple(samples),
    )


def skipped(entry: CheckEntry, capability: str) -> CheckResult:
    return CheckResult(
        name=entry.key, outcome=CheckOutcome.SKIPPED, required=entry.required, passed=0,
        failed=0, errored=0, total=0, statistic=None, threshold=entry.threshold, lower=None,
        upper=None, duration_seconds=0.0,
        details={"check": entry.name, "reason": f"target does not declare {capability!r}"},
    )


def unusable_endpoint(samples: Iterable[Sample]) -> JobFailure | None:
    """When every sample errored, say why the whole job cannot go on."""
    samples = list(samples)
    if not samples or any(s.grade is not Grade.ERROR for s in samples):
        return None
    causes = [s.error_cause or ErrorCause.CONNECT_ERROR for s in samples]
    for cause in causes:
        if cause in PERMANENT_CAUSES:
            message = next(s.error for s in samples if s.error_cause == cause)
            return JobFailure(cause, message or cause, retryable=False)
    cause = max(set(causes), key=causes.count)
    message = next((s.error for s in samples if s.error_cause == cause), cause)
    return JobFailure(cause, message or cause, retryable=cause in RETRYABLE_CAUSES)


async def run_suite(
    suite: Suite,
    target: TargetSpec,
    provider: Provider,
    hooks: EngineHooks,
    concurrency: int = 4,
) -> list[CheckResult]:
    """Run the checks not yet completed; raise JobFailure when the endpoint is unusable."""
    results: list[CheckResult] = []
    ctx = CheckContext(provider=provider, target=target, concurrency=concurrency,
                       should_stop=hooks.should_stop, on_sample=hooks.on_sample)
    for position, entry in enumerate(suite.definition.checks):
        if entry.key in hooks.completed:
            continue
        if hooks.should_stop():
            raise StopRequested()
        spec = REGISTRY[entry.name]
        if not target.supports(spec.requires):
            result = skipped(entry, spec.requires or "")
        else:
            started = time.perf_counter()
            samples = await spec.factory(**entry.params)(ctx)
            if position == 0:
                failure = unusable_endpoint(samples)
                if failure is not None:
                    raise failure
            result = score(entry, samples, time.perf_counter() - started,
                           suite.definition.max_error_rate, getattr(samples, "details", None))
        hooks.on_check_finished(result)
        results.append(result)
    return results
