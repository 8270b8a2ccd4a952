"""Run a suite against one target: checks in order, each scored and handed back as a checkpoint.

Imports nothing from Flask, Celery or SQLAlchemy; the worker and the CLI both call `run_suite`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from app.certification.certificates import RunRecord
from app.certification.checks import (
    CheckContext,
    Decided,
    SequentialPlan,
    StopRequested,
    TargetSpec,
)
from app.certification.checks.catalog import REGISTRY
from app.certification.checks.judging import JUDGE_CAUSES, Judge
from app.certification.explain import explain
from app.certification.providers.base import RETRYABLE_CAUSES, ErrorCause, Provider
from app.certification.regressions import Baseline, assess
from app.certification.results import CheckOutcome, CheckResult, Grade, Sample
from app.certification.scoring import (
    SEQUENTIAL_ALPHA,
    SEQUENTIAL_METHOD,
    count_grades,
    outcome_for,
    sequential_outcome_for,
)
from app.certification.suites import CheckEntry, Suite

# The engine's version goes into every certificate: it names the grading rules a verdict was
# reached under (docs/methodology.md). Raise it whenever a grader or a scoring rule changes.
ENGINE_VERSION = "2.3"

# Causes that no retry can mend: the job fails at once.
PERMANENT_CAUSES = frozenset(
    {
        ErrorCause.AUTH_FAILED,
        ErrorCause.NOT_FOUND,
        ErrorCause.BLOCKED_ADDRESS,
        ErrorCause.INVALID_TARGET,
    }
)
# Statuses that say "this is not served here" whatever is retried.
UNAVAILABLE_STATUSES = frozenset({404, 405, 501})


class JobFailure(Exception):
    """The endpoint could not be certified at all; `retryable` says whether to try again."""

    def __init__(
        self, cause: str, message: str, retryable: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.cause = cause
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass
class EngineHooks:
    """How the caller checkpoints and steers a run."""

    completed: set[str] = field(default_factory=set)
    stopped: str | None = None  # an earlier delivery stopped the run: skip what is left
    on_check_finished: Callable[[CheckResult], None] = lambda result: None
    should_stop: Callable[[], bool] = lambda: False
    on_sample: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class RunConditions:
    """How a suite runs against a target: from the suite, capped by what the target declares.
    Signed into the certificate; the worker and the CLI compute it alike."""

    concurrency: int
    request_timeout_seconds: float
    connect_timeout_seconds: float
    sample_retries: int
    max_error_rate: float
    check_concurrency: dict[str, int]  # checks with a concurrency of their own (latency, load)
    target_max_concurrency: int | None
    target_rate_limit_rps: float | None

    @property
    def max_connections(self) -> int:
        return max([self.concurrency, *self.check_concurrency.values()])

    def as_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "check_concurrency": dict(sorted(self.check_concurrency.items())),
            "request_timeout_seconds": _number(self.request_timeout_seconds),
            "connect_timeout_seconds": _number(self.connect_timeout_seconds),
            "sample_retries": self.sample_retries,
            "max_error_rate": f"{self.max_error_rate:.4f}",
            "target_max_concurrency": self.target_max_concurrency,
            "target_rate_limit_rps": (
                None if self.target_rate_limit_rps is None else f"{self.target_rate_limit_rps:.4f}"
            ),
        }


def _number(value: float) -> int | str:
    """A signed payload holds no floats (certificates.canonical_json)."""
    return int(value) if float(value).is_integer() else f"{value:.4f}"


def run_conditions(suite: Suite, target: TargetSpec) -> RunConditions:
    run = suite.definition.run
    cap = target.max_concurrency

    def capped(n: int) -> int:
        return max(1, min(n, cap) if cap else n)

    own = {
        entry.key: capped(int(entry.params["concurrency"]))
        for entry in suite.definition.checks
        if isinstance(entry.params.get("concurrency"), int)
        and target.supports(REGISTRY[entry.name].requires)
    }
    return RunConditions(
        concurrency=capped(run.concurrency),
        request_timeout_seconds=run.request_timeout_seconds,
        connect_timeout_seconds=run.connect_timeout_seconds,
        sample_retries=run.sample_retries,
        max_error_rate=suite.definition.max_error_rate,
        check_concurrency=own,
        target_max_concurrency=cap,
        target_rate_limit_rps=target.rate_limit_rps,
    )


def run_record(
    suite: Suite, target: TargetSpec, client: str, baseline: Baseline | None = None
) -> RunRecord:
    """What a verdict is reached under, for its certificate: the same for the worker and
    the CLI but for `client`; `baseline`: what regressions were judged against."""
    return RunRecord(
        conditions=run_conditions(suite, target).as_dict(),
        capabilities=dict(target.capabilities),
        covers=suite.covers,
        engine_version=ENGINE_VERSION,
        client=client,
        baseline=baseline.reference() if baseline is not None else None,
    )


def planned_samples(suite: Suite, target: TargetSpec) -> int:
    """The most samples the suite sends (a sequential check may stop before its max)."""
    total = 0
    for entry in suite.definition.checks:
        spec = REGISTRY[entry.name]
        if target.supports(spec.requires):
            total += planned_for(entry, suite)
    return total


def planned_for(entry: CheckEntry, suite: Suite) -> int:
    planned = int(REGISTRY[entry.name].planned(**entry.params, _datasets=suite.data))
    if entry.sampling.sequential and entry.sampling.max is not None:
        return min(planned, entry.sampling.max)
    return planned


def sequential_plan(entry: CheckEntry, suite: Suite) -> SequentialPlan | None:
    sampling = entry.sampling
    if not sampling.sequential or sampling.max is None:
        return None
    seed = f"{suite.content_hash}:{entry.key}"
    return SequentialPlan(entry.rate_threshold, sampling.max, sampling.batch, seed)


def capability_unavailable(samples: list[Sample]) -> bool:
    """Every sample ended in the same permanent answer: 404/405/501, or one and the same 5xx
    body after retrying (every sample was retried, and answered the same). A declared
    capability that is not served fails: that is not a measurement error. Transient errors,
    which differ, pass now and then, or were not retried, stay errors: a flaky endpoint that
    fails six requests in a row by chance is not an endpoint without the capability."""
    if not samples or any(s.grade is not Grade.ERROR for s in samples):
        return False
    statuses = {s.status_code for s in samples}
    if len(statuses) != 1:
        return False
    status = statuses.pop()
    if status in UNAVAILABLE_STATUSES:
        return True
    return (
        status is not None
        and status >= 500
        and len({s.error for s in samples}) == 1
        and all(s.retries > 0 for s in samples)
    )


def score(
    entry: CheckEntry,
    samples: list[Sample],
    duration: float,
    max_error_rate: float,
    details: dict[str, Any] | None = None,
    decided: Decided | None = None,
    stopped_early: bool = False,
) -> CheckResult:
    details = dict(details or {})
    if capability_unavailable(samples):
        samples = [
            replace(
                s,
                grade=Grade.FAIL,
                detail={**s.detail, "reason": ErrorCause.CAPABILITY_UNAVAILABLE},
            )
            for s in samples
        ]
        details["cause"] = ErrorCause.CAPABILITY_UNAVAILABLE
        decided = None  # nothing was measured: the failures decide
    passed, failed, errored = count_grades(samples)
    rule = sequential_outcome_for if entry.sampling.sequential else outcome_for
    outcome, rate, wilson_lower, wilson_upper = rule(
        passed, failed, errored, entry.rate_threshold, max_error_rate
    )
    if entry.sampling.sequential:
        details["sampling"] = {
            "mode": "sequential",
            "method": SEQUENTIAL_METHOD,
            "alpha": SEQUENTIAL_ALPHA,
            "max": entry.sampling.max,
            "batch": entry.sampling.batch,
            "n": len(samples),
            "stopped": "decided" if stopped_early else "max",
        }
    lower: float | None = wilson_lower
    upper: float | None = wilson_upper
    threshold: float | None = entry.rate_threshold
    own_explanation = ""
    if decided is not None and outcome is not CheckOutcome.ERRORED:
        outcome, rate, lower, upper = (
            decided.outcome,
            decided.statistic,
            decided.lower,
            decided.upper,
        )
        threshold, own_explanation = decided.threshold, decided.explanation
    causes: dict[str, int] = {}
    for sample in samples:
        if sample.error_cause:  # errors, and failures with a cause of their own
            causes[sample.error_cause] = causes.get(sample.error_cause, 0) + 1
    result = CheckResult(
        name=entry.key,
        outcome=outcome,
        required=entry.required,
        passed=passed,
        failed=failed,
        errored=errored,
        total=len(samples),
        statistic=rate,
        threshold=threshold,
        lower=lower,
        upper=upper,
        duration_seconds=round(duration, 3),
        details={"check": entry.name, "error_causes": causes, **details},
        samples=tuple(samples),
    )
    return replace(result, explanation=explain(result, own_explanation))


def skipped(entry: CheckEntry, reason: str) -> CheckResult:
    return CheckResult(
        name=entry.key,
        outcome=CheckOutcome.SKIPPED,
        required=entry.required,
        passed=0,
        failed=0,
        errored=0,
        total=0,
        statistic=None,
        threshold=entry.threshold,
        lower=None,
        upper=None,
        duration_seconds=0.0,
        details={"check": entry.name, "reason": reason},
        explanation=f"skipped: {reason}",
    )


def unusable_endpoint(samples: Iterable[Sample]) -> JobFailure | None:
    """When every sample errored, say why the whole job cannot go on."""
    samples = list(samples)
    if not samples or any(s.grade is not Grade.ERROR for s in samples):
        return None
    if any(s.error_cause in JUDGE_CAUSES for s in samples):
        return None  # the judge failed, not the endpoint: the check errors
    causes = [s.error_cause or ErrorCause.CONNECT_ERROR for s in samples]
    for cause in causes:
        if cause in PERMANENT_CAUSES:
            message = next(s.error for s in samples if s.error_cause == cause)
            return JobFailure(cause, message or cause, retryable=False)
    cause = max(set(causes), key=causes.count)
    message = next((s.error for s in samples if s.error_cause == cause), cause)
    return JobFailure(cause, message or cause, retryable=cause in RETRYABLE_CAUSES)


STOPPING_CAUSES = (ErrorCause.MODEL_NOT_LISTED,)


def stop_message(cause: str, model: str) -> str:
    """The reason given to the checks a stopped run does not run."""
    return f"not run: the endpoint does not list model {model!r} ({cause})"


def model_not_listed(result: CheckResult) -> bool:
    """Connectivity saw listings, and none of them held the model: whatever answers under
    that name is not the model the certification is about."""
    return (
        result.details.get("check") == "connectivity"
        and result.passed == 0
        and result.details.get("error_causes", {}).get(ErrorCause.MODEL_NOT_LISTED, 0) > 0
    )


async def run_suite(
    suite: Suite,
    target: TargetSpec,
    provider: Provider,
    hooks: EngineHooks,
    conditions: RunConditions | None = None,
    judges: Mapping[str, Judge] | None = None,
    baseline: Baseline | None = None,
) -> list[CheckResult]:
    """Run the checks not yet completed; raise JobFailure when the endpoint is unusable.
    `judges`: the judge models the suite's `judge` graders name, by their logical names.
    Each result is compared with `baseline` (regressions.assess): the target's last
    certified result of this suite, None for a first certification."""
    conditions = conditions or run_conditions(suite, target)
    results: list[CheckResult] = []
    ctx = CheckContext(
        provider=provider,
        target=target,
        concurrency=conditions.concurrency,
        should_stop=hooks.should_stop,
        on_sample=hooks.on_sample,
        judges=dict(judges or {}),
    )
    stopped = hooks.stopped
    for position, entry in enumerate(suite.definition.checks):
        if entry.key in hooks.completed:
            continue
        if hooks.should_stop():
            raise StopRequested()
        spec = REGISTRY[entry.name]
        if stopped is not None:
            result = skipped(entry, stopped)
        elif not target.supports(spec.requires):
            result = skipped(entry, f"the target does not declare {spec.requires!r}")
        else:
            started = time.perf_counter()
            check_ctx = replace(
                ctx, datasets=suite.data, sequential=sequential_plan(entry, suite), stopped_early=[]
            )
            samples = await spec.factory(**entry.params)(check_ctx)
            if position == 0:
                failure = unusable_endpoint(samples)
                if failure is not None:
                    raise failure
            result = score(
                entry,
                samples,
                time.perf_counter() - started,
                suite.definition.max_error_rate,
                getattr(samples, "details", None),
                getattr(samples, "decided", None),
                stopped_early=bool(check_ctx.stopped_early),
            )
            if model_not_listed(result):
                result = replace(
                    result, details={**result.details, "cause": ErrorCause.MODEL_NOT_LISTED}
                )
                result = replace(result, explanation=explain(result))
                stopped = stop_message(ErrorCause.MODEL_NOT_LISTED, target.model)
        result = assess(result, entry.regression, baseline)
        hooks.on_check_finished(result)
        results.append(result)
    return results
