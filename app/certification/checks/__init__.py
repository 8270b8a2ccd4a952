"""Check registry: a suite names checks, the worker rebuilds them from {name, params}."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from app.certification.providers.base import ChatResult, EndpointError, ErrorCause, Provider
from app.certification.results import RESPONSE_EXCERPT_CHARS, Grade, Sample

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


@dataclass
class CheckContext:
    provider: Provider
    target: TargetSpec
    concurrency: int = 4
    should_stop: Callable[[], bool] = lambda: False
    on_sample: Callable[[], None] = lambda: None


class SampleList(list[Sample]):
    """Samples plus check-level details (e.g. latency percentiles) the engine stores with them."""

    def __init__(self, samples: Iterable[Sample] = (), details: dict[str, Any] | None = None):
        super().__init__(samples)
        self.details: dict[str, Any] = dict(details or {})


# A check returns its samples; a SampleList also carries details for CheckResult.details.
CheckFn = Callable[[CheckContext], Awaitable[list[Sample]]]


@dataclass(frozen=True)
class CheckSpec:
    name: str
    factory: Callable[..., CheckFn]
    requires: str | None
    planned: Callable[..., int]
    description: str


REGISTRY: dict[str, CheckSpec] = {}


def register(
    name: str,
    *,
    requires: str | None = None,
    planned: Callable[..., int] = lambda **_: 1,
    description: str = "",
) -> Callable[[Callable[..., CheckFn]], Callable[..., CheckFn]]:
    """Register a check factory under a stable name."""

    def decorate(factory: Callable[..., CheckFn]) -> Callable[..., CheckFn]:
        if name in REGISTRY:
            raise ValueError(f"check {name!r} registered twice")
        REGISTRY[name] = CheckSpec(name, factory, requires, planned,
                                   description or (factory.__doc__ or "").strip())
        return factory

    return decorate


def excerpt(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= RESPONSE_EXCERPT_CHARS else text[:RESPONSE_EXCERPT_CHARS] + "…"


# The endpoint answered, but not in its protocol: that is the endpoint failing the check, not a
# measurement error (timeouts, refused connections, 5xx and 429 after retries stay errors).
MISBEHAVIOUR_CAUSES = frozenset({ErrorCause.MALFORMED_BODY, ErrorCause.STREAM_INCOMPLETE})


def error_sample(index: int, prompt_id: str, exc: EndpointError, summary: dict[str, Any]) -> Sample:
    grade = Grade.FAIL if exc.cause in MISBEHAVIOUR_CAUSES else Grade.ERROR
    return Sample(
        index=index, prompt_id=prompt_id, grade=grade, request_summary=summary,
        latency_ms=exc.latency_ms, status_code=exc.status_code, error=exc.message[:500],
        error_cause=exc.cause,
    )


async def run_samples(
    ctx: CheckContext,
    items: Sequence[T] | Iterable[T],
    grade_one: Callable[[int, T], Awaitable[Sample]],
    concurrency: int | None = None,
) -> list[Sample]:
    """Grade items concurrently; stop at a sample boundary when asked."""
    limit = asyncio.Semaphore(max(1, concurrency or ctx.concurrency))
    stop = asyncio.Event()

    async def one(index: int, item: T) -> Sample | None:
        async with limit:
            if stop.is_set() or ctx.should_stop():
                stop.set()
                return None
            sample = await grade_one(index, item)
            ctx.on_sample()
            return sample

    results = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
    if stop.is_set():
        raise StopRequested()
    return [s for s in results if s is not None]


def timed() -> Callable[[], float]:
    started = time.perf_counter()
    return lambda: (time.perf_counter() - started) * 1000


def chat_sample(
    index: int, prompt_id: str, passed: bool, summary: dict[str, Any], result: ChatResult,
    detail: dict[str, Any] | None = None,
) -> Sample:
    """A graded sample from a chat result, with its evidence."""
    return Sample(
        index=index, prompt_id=prompt_id, grade=Grade.PASS if passed else Grade.FAIL,
        request_summary=summary, response_excerpt=excerpt(result.text),
        latency_ms=result.latency_ms, ttft_ms=result.ttft_ms, status_code=result.status_code,
        detail=detail or {},
    )
