"""Latency under concurrency against an SLO: each sample passes when it answers within it.

The concurrency used is the check's `concurrency` capped by the job's (the target's declared
maximum is never exceeded); both are recorded, with p50/p95 over answered requests.
"""

from __future__ import annotations

import math

from app.certification.checks import (
    CheckContext,
    CheckFn,
    SampleList,
    chat_sample,
    error_sample,
    register,
    run_samples,
)
from app.certification.checks.chat import chat_prompt
from app.certification.providers.base import ChatRequest, EndpointError
from app.certification.results import Sample


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@register("latency", planned=lambda requests=24, **_: requests,
          description="Latency p50/p95 under concurrent requests; each within the SLO.")
def latency(requests: int = 24, concurrency: int = 8, p95_slo_ms: float = 2000.0,
            max_tokens: int = 16) -> CheckFn:
    async def check(ctx: CheckContext) -> list[Sample]:
        async def grade(index: int, _: int) -> Sample:
            prompt, _token = chat_prompt(index)
            prompt_id = f"latency-{index}"
            summary = {"endpoint": "chat", "prompt_id": prompt_id, "max_tokens": max_tokens,
                       "slo_ms": p95_slo_ms}
            try:
                result = await ctx.provider.chat(ChatRequest(
                    messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens))
            except EndpointError as exc:
                return error_sample(index, prompt_id, exc, summary)
            return chat_sample(index, prompt_id, result.latency_ms <= p95_slo_ms, summary, result,
                               {"within_slo": result.latency_ms <= p95_slo_ms})

        used = max(1, min(concurrency, ctx.concurrency))
        samples = await run_samples(ctx, range(requests), grade, concurrency=used)
        answered = [s.latency_ms for s in samples if s.latency_ms is not None and not s.error]
        p50, p95 = percentile(answered, 50), percentile(answered, 95)
        return SampleList(samples, {
            "p50_ms": None if p50 is None else round(p50, 1),
            "p95_ms": None if p95 is None else round(p95, 1),
            "p95_slo_ms": p95_slo_ms, "p95_within_slo": p95 is not None and p95 <= p95_slo_ms,
            "concurrency": used, "requested_concurrency": concurrency,
        })

    return check
