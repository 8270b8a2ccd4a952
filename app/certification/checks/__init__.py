"""Check registry: a suite names checks, the worker rebuilds them from {name, params}."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from app.certification.checks.grading import model_matches
from app.certification.providers.base import (
    ChatRequest,
    ChatResult,
    EndpointError,
    ErrorCause,
    Provider,
    scrub,
)
from app.certification.providers.http import SAMPLE_RETRIES
from app.certification.results import RESPONSE_EXCERPT_CHARS, CheckOutcome, Grade, Sample
from app.certification.scoring import count_grades, sequential_decision

if TYPE_CHECKING:
    from app.certification.checks.judging import Judge
    from app.certification.suites import CheckEntry, Rows

T = TypeVar("T")


@dataclass(frozen=True)
class TargetSpec:
    """What the engine knows of a target; never holds a row."""

    provider: str
    model: str
    base_url: str
    region: str | None = None
    capabilities: dict[str, Any] = field(default_factory=dict)
    rate_limit_rps: float | None = None
    max_concurrency: int | None = None

    def supports(self, capability: str | None) -> bool:
        if capability is None:
            return True
        value = self.capabilities.get(capability)
        return bool(value)


class StopRequested(Exception):
    """Raised at a sample boundary when the job was cancelled or is shutting down."""


@dataclass(frozen=True)
class SequentialPlan:
    """A check sampled sequentially (suites.Sampling): batches of `batch`, at most `max`
    samples, stopping as soon as the confidence sequence decides against `threshold`."""

    threshold: float
    max: int
    batch: int
    seed: str  # the order items are drawn in is a shuffle seeded by the check's key

    def order(self, items: Sequence[T]) -> list[T]:
        drawn = list(items)
        random.Random(self.seed).shuffle(drawn)
        return drawn[: self.max]


@dataclass
class CheckContext:
    provider: Provider
    target: TargetSpec
    concurrency: int = 4  # the suite's, within the target's declared maximum
    should_stop: Callable[[], bool] = lambda: False
    on_sample: Callable[[], None] = lambda: None
    datasets: Mapping[str, Rows] = field(default_factory=dict)  # the suite's own datasets
    sequential: SequentialPlan | None = None
    stopped_early: list[int] = field(default_factory=list)  # samples drawn, when stopped
    judges: Mapping[str, Judge] = field(default_factory=dict)  # by the suite's logical names

    def capped(self, concurrency: int) -> int:
        """A check's own concurrency (from the suite) within the target's declared maximum."""
        cap = self.target.max_concurrency
        return max(1, min(concurrency, cap) if cap else concurrency)


@dataclass(frozen=True)
class Decided:
    """A check's own outcome (quantile tests, measured ratios) in place of the Wilson rule on
    its pass rate; the engine still makes a check with too many errors `errored`."""

    outcome: CheckOutcome
    statistic: float | None
    lower: float | None
    upper: float | None
    threshold: float | None
    explanation: str


class SampleList(list[Sample]):
    """Samples plus check-level details (e.g. latency percentiles) the engine stores with them,
    and the check's own outcome when it decides one (`decided`)."""

    def __init__(
        self,
        samples: Iterable[Sample] = (),
        details: dict[str, Any] | None = None,
        decided: Decided | None = None,
    ):
        super().__init__(samples)
        self.details: dict[str, Any] = dict(details or {})
        self.decided = decided


# A check returns its samples; a SampleList also carries details for CheckResult.details.
CheckFn = Callable[[CheckContext], Awaitable[list[Sample]]]


Problems = list[dict[str, Any]]  # [{"loc": [...], "msg": "..."}], paths within a check entry


def signature_problems(factory: Callable[..., CheckFn], params: Mapping[str, Any]) -> Problems:
    try:
        inspect.signature(factory).bind(**params)
    except TypeError as exc:
        return [{"loc": ["params"], "msg": str(exc)}]
    return []


@dataclass(frozen=True)
class CheckSpec:
    name: str
    factory: Callable[..., CheckFn]
    requires: str | None
    planned: Callable[..., int]
    description: str
    # A check whose parameters are a pydantic model (strictly validated, in the published
    # JSON Schema) and that may read the suite's own datasets: `fits` says what in its
    # parameters does not fit those datasets (fields a template names, a grader's answers).
    params_model: type[BaseModel] | None = None
    fits: Callable[[BaseModel, Mapping[str, Rows]], Problems] | None = None
    # Decided by its pass rate over independent samples: it may sample sequentially.
    sequential: bool = False

    def problems(self, entry: CheckEntry, data: Mapping[str, Rows]) -> Problems:
        if self.params_model is None:
            return signature_problems(self.factory, entry.params)
        from pydantic import ValidationError

        try:
            params = self.params_model.model_validate(entry.params)
        except ValidationError as exc:
            return [
                {"loc": ["params", *error["loc"]], "msg": error["msg"]} for error in exc.errors()
            ]
        found = self.fits(params, data) if self.fits else []
        if entry.sampling.sequential and entry.sampling.max is not None:
            rows = len(data.get(str(getattr(params, "dataset", "")), ()))
            if rows and entry.sampling.max > rows:
                found.append(
                    {
                        "loc": ["sampling", "max"],
                        "msg": f"max {entry.sampling.max} is more than the dataset's {rows} "
                        "rows (a row is drawn at most once)",
                    }
                )
        return found


REGISTRY: dict[str, CheckSpec] = {}


def register(
    name: str,
    *,
    requires: str | None = None,
    planned: Callable[..., int] = lambda **_: 1,
    description: str = "",
    params_model: type[BaseModel] | None = None,
    fits: Callable[[Any, Mapping[str, Rows]], Problems] | None = None,
    sequential: bool = False,
) -> Callable[[Callable[..., CheckFn]], Callable[..., CheckFn]]:
    """Register a check factory under a stable name."""

    def decorate(factory: Callable[..., CheckFn]) -> Callable[..., CheckFn]:
        if name in REGISTRY:
            raise ValueError(f"check {name!r} registered twice")
        REGISTRY[name] = CheckSpec(
            name,
            factory,
            requires,
            planned,
            description or (factory.__doc__ or "").strip(),
            params_model,
            fits,
            sequential,
        )
        return factory

    return decorate


def excerpt(text: str | None) -> str | None:
    """The reply as evidence: the job's credential scrubbed first, then cut."""
    if text is None:
        return None
    text = scrub(text)
    return text if len(text) <= RESPONSE_EXCERPT_CHARS else text[:RESPONSE_EXCERPT_CHARS] + "…"


# The endpoint answered, but not in its protocol: that is the endpoint failing the check, not a
# measurement error (timeouts, refused connections, 5xx and 429 after retries stay errors).
MISBEHAVIOUR_CAUSES = frozenset(
    {ErrorCause.MALFORMED_BODY, ErrorCause.STREAM_INCOMPLETE, ErrorCause.STREAM_EMPTY}
)


def error_sample(index: int, prompt_id: str, exc: EndpointError, summary: dict[str, Any]) -> Sample:
    grade = Grade.FAIL if exc.cause in MISBEHAVIOUR_CAUSES else Grade.ERROR
    return Sample(
        index=index,
        prompt_id=prompt_id,
        grade=grade,
        request_summary=summary,
        latency_ms=exc.latency_ms,
        status_code=exc.status_code,
        error=scrub(exc.message)[:500],
        error_cause=exc.cause,
    )


async def run_samples(
    ctx: CheckContext,
    items: Sequence[T] | Iterable[T],
    grade_one: Callable[[int, T], Awaitable[Sample]],
    concurrency: int | None = None,
) -> list[Sample]:
    """Grade items concurrently; stop at a sample boundary when asked. A check sampled
    sequentially (ctx.sequential) draws its items in a seeded shuffled order, in batches,
    and stops as soon as the confidence sequence of its pass rate decides."""
    if ctx.sequential is not None:
        return await _sequential_samples(ctx, ctx.sequential, items, grade_one, concurrency)
    limit = asyncio.Semaphore(max(1, concurrency or ctx.concurrency))
    stop = asyncio.Event()

    async def one(index: int, item: T) -> Sample | None:
        async with limit:
            if stop.is_set() or ctx.should_stop():
                stop.set()
                return None
            retries = [0]
            SAMPLE_RETRIES.set(retries)  # this task's own context: the count is this sample's
            sample = await grade_one(index, item)
            ctx.on_sample()
            return dataclasses.replace(sample, retries=retries[0]) if retries[0] else sample

    results = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
    if stop.is_set():
        raise StopRequested()
    return [s for s in results if s is not None]


async def _sequential_samples(
    ctx: CheckContext,
    plan: SequentialPlan,
    items: Sequence[T] | Iterable[T],
    grade_one: Callable[[int, T], Awaitable[Sample]],
    concurrency: int | None,
) -> list[Sample]:
    drawn = plan.order(list(items))
    inner = dataclasses.replace(ctx, sequential=None)
    samples: list[Sample] = []
    for start in range(0, len(drawn), plan.batch):
        batch = drawn[start : start + plan.batch]

        async def grade_at(offset: int, item: T, start: int = start) -> Sample:
            return await grade_one(start + offset, item)

        samples.extend(await run_samples(inner, batch, grade_at, concurrency))
        passed, failed, _ = count_grades(samples)
        if sequential_decision(passed, passed + failed, plan.threshold) is not None:
            if len(samples) < len(drawn):
                ctx.stopped_early.append(len(samples))
            break
    return samples


def timed() -> Callable[[], float]:
    started = time.perf_counter()
    return lambda: (time.perf_counter() - started) * 1000


def chat_sample(
    index: int,
    prompt_id: str,
    passed: bool,
    summary: dict[str, Any],
    result: ChatResult,
    detail: dict[str, Any] | None = None,
    cause: str | None = None,
) -> Sample:
    """A graded sample from a chat result, with its evidence: what the endpoint said of the
    reply (finish_reason, usage, the model it names) beside the grade and why."""
    detail = dict(detail or {})
    asked = summary.get("model")
    if isinstance(asked, str) and not model_matches(asked, result.raw_model):
        detail["model_mismatch"] = True
    return Sample(
        index=index,
        prompt_id=prompt_id,
        grade=Grade.PASS if passed else Grade.FAIL,
        request_summary=summary,
        response_excerpt=excerpt(result.text),
        latency_ms=result.latency_ms,
        ttft_ms=result.ttft_ms,
        status_code=result.status_code,
        error_cause=cause,
        detail=detail,
        finish_reason=result.finish_reason,
        usage=result.usage,
        served_model=result.raw_model,
    )


PROMPT_EXCERPT_CHARS = 500


def chat_summary(
    ctx: CheckContext, prompt_id: str, request: ChatRequest, **extra: Any
) -> dict[str, Any]:
    """What a sample's request was, in its evidence: the model asked, the prompt (its first
    PROMPT_EXCERPT_CHARS characters) and the parameters that bound the reply."""
    prompt = next(
        (str(m.get("content", "")) for m in reversed(request.messages) if m.get("role") == "user"),
        "",
    )
    summary: dict[str, Any] = {
        "endpoint": "chat",
        "model": ctx.provider.model,
        "prompt_id": prompt_id,
        "prompt": prompt[:PROMPT_EXCERPT_CHARS],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }
    if len(prompt) > PROMPT_EXCERPT_CHARS:
        summary["prompt_chars"] = len(prompt)
    if request.stream:
        summary["stream"] = True
    return summary | extra


@dataclass(frozen=True)
class Judgement:
    """One reply graded: passed or not, why not (a grading.REASONS code), what was seen."""

    passed: bool
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    cause: str | None = None  # an error cause of its own (stream_empty), counted apart
    # Set when no grade could be given (a judge that failed): the sample is an error, with
    # this message and `cause`, never a fail.
    error: str | None = None


async def graded_chats(
    ctx: CheckContext,
    items: Sequence[T],
    ask: Callable[[int, T], tuple[str, ChatRequest, dict[str, Any]]],
    judge: Callable[[T, ChatRequest, ChatResult], Judgement | Awaitable[Judgement]],
    concurrency: int | None = None,
) -> list[Sample]:
    """Send one chat per item (`ask`: its prompt id, request and extra summary fields) and
    grade each reply (`judge`, which may await another model); transport errors become
    error samples, and so does a judgement that could not be given (Judgement.error)."""

    async def grade(index: int, item: T) -> Sample:
        prompt_id, request, extra = ask(index, item)
        summary = chat_summary(ctx, prompt_id, request, **extra)
        try:
            result = await ctx.provider.chat(request)
        except EndpointError as exc:
            return error_sample(index, prompt_id, exc, summary)
        graded = judge(item, request, result)
        judgement = await graded if inspect.isawaitable(graded) else graded
        detail = dict(judgement.detail)
        if judgement.reason and not judgement.passed:
            detail["reason"] = judgement.reason
        sample = chat_sample(
            index, prompt_id, judgement.passed, summary, result, detail, judgement.cause
        )
        if judgement.error is not None:
            return dataclasses.replace(
                sample, grade=Grade.ERROR, error=scrub(judgement.error)[:500]
            )
        return sample

    return await run_samples(ctx, items, grade, concurrency)
