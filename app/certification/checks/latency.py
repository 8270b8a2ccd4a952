"""Latency under concurrency as quantile tests against SLOs (DESIGN §5).

`requests` chats at the suite's `concurrency` (within the target's declared maximum),
streamed when the target declares streaming so that the time to first token is measured
too. For each quantile with an SLO (p50 and p95 of total time, p95 of TTFT, p50 of output
tokens per second) a distribution-free 95 % confidence interval comes from order
statistics (scoring.quantile_interval): the quantile passes when the whole interval is
within its SLO, fails when the whole interval is outside, and is otherwise inconclusive.
The check fails when any quantile fails, passes when all pass. A per-sample "within the
SLO" grade is evidence only: 23 of 24 requests under the SLO is not a p95 under it.

Samples that did not answer in the protocol (errors, cut or empty streams) are left out of
the quantiles: a cut stream is quick. A p95 bound needs at least 72 answered requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.certification.checks import (
    CheckContext,
    CheckFn,
    Decided,
    Judgement,
    SampleList,
    graded_chats,
    register,
)
from app.certification.checks.chat import chat_prompt
from app.certification.checks.streaming import judge_stream
from app.certification.providers.base import ChatRequest, ChatResult
from app.certification.results import CheckOutcome, Grade, Sample
from app.certification.scoring import quantile_interval, quantile_outcome


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    estimate, _, _ = quantile_interval(values, q / 100) if values else (None, None, None)
    return estimate


@dataclass(frozen=True)
class QuantileTest:
    metric: str  # e.g. latency_p95_ms
    q: float
    slo: float | None
    at_most: bool = True  # the quantile must be at most the SLO (else at least)

    def run(self, values: list[float]) -> dict[str, Any]:
        estimate, lower, upper = quantile_interval(values, self.q)
        outcome = (
            quantile_outcome(lower, upper, self.slo, self.at_most)
            if self.slo is not None and values
            else None
        )
        return {
            "metric": self.metric,
            "n": len(values),
            "estimate": _round(estimate),
            "lower": _round(lower),
            "upper": _round(upper),
            "slo": self.slo,
            "slo_is": "at_most" if self.at_most else "at_least",
            "outcome": outcome.value if outcome else None,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def tokens_per_second(result: ChatResult) -> float | None:
    """Output tokens per second of generation (after the first token when streamed)."""
    tokens = (result.usage or {}).get("completion_tokens")
    if not tokens:
        return None
    seconds = (result.latency_ms - (result.ttft_ms or 0.0)) / 1000
    return tokens / seconds if seconds > 0 else None


def combine(tests: list[dict[str, Any]]) -> CheckOutcome:
    decided = [t["outcome"] for t in tests if t["outcome"] is not None]
    if not decided:
        return CheckOutcome.INCONCLUSIVE
    if CheckOutcome.FAILED.value in decided:
        return CheckOutcome.FAILED
    if all(o == CheckOutcome.PASSED.value for o in decided):
        return CheckOutcome.PASSED
    return CheckOutcome.INCONCLUSIVE


def describe(test: dict[str, Any]) -> str:
    name = test["metric"].replace("_ms", "").replace("_", " ")
    unit = " ms" if test["metric"].endswith("_ms") else "/s"
    if test["estimate"] is None:
        return f"{name}: no answered requests"
    bounds = f"95 % CI {_bound(test['lower'])}–{_bound(test['upper'])}{unit}"
    text = f"{name} {test['estimate']:g}{unit} ({bounds})"
    if test["slo"] is not None:
        relation = "≤" if test["slo_is"] == "at_most" else "≥"
        text += f" vs SLO {relation} {test['slo']:g}{unit}: {test['outcome']}"
    return text


def _bound(value: float | None) -> str:
    return "unbounded" if value is None else f"{value:g}"


@register(
    "latency",
    planned=lambda requests=80, **_: requests,
    description="Latency and TTFT quantiles under concurrency, tested against SLOs with "
    "order-statistic bounds.",
)
def latency(
    requests: int = 80,
    concurrency: int = 8,
    p95_slo_ms: float | None = 2000.0,
    p50_slo_ms: float | None = None,
    ttft_p95_slo_ms: float | None = None,
    min_tokens_per_second: float | None = None,
    max_tokens: int = 16,
) -> CheckFn:
    async def check(ctx: CheckContext) -> list[Sample]:
        stream = ctx.target.supports("streaming")

        def ask(index: int, _: int) -> tuple[str, ChatRequest, dict[str, Any]]:
            prompt, _token = chat_prompt(index)
            return (
                f"latency-{index}",
                ChatRequest(
                    messages=[{"role": "user", "content": prompt}],
                    max_tokens=max_tokens,
                    stream=stream,
                ),
                {"slo_ms": p95_slo_ms},
            )

        def judge(index: int, request: ChatRequest, result: ChatResult) -> Judgement:
            if stream and (empty := judge_stream(result)) is not None:
                return empty
            within = p95_slo_ms is None or result.latency_ms <= p95_slo_ms
            rate = tokens_per_second(result)
            detail = {"within_slo": within} | (
                {} if rate is None else {"output_tokens_per_second": round(rate, 1)}
            )
            return Judgement(within, None if within else "over_slo", detail)

        used = ctx.capped(concurrency)
        samples = await graded_chats(ctx, range(requests), ask, judge, concurrency=used)
        answered = [s for s in samples if s.grade is not Grade.ERROR and not s.error_cause]
        latencies = [s.latency_ms for s in answered if s.latency_ms is not None]
        ttfts = [s.ttft_ms for s in answered if s.ttft_ms is not None]
        rates = [
            float(s.detail["output_tokens_per_second"])
            for s in answered
            if "output_tokens_per_second" in s.detail
        ]
        tests = [
            QuantileTest("latency_p50_ms", 0.5, p50_slo_ms).run(latencies),
            QuantileTest("latency_p95_ms", 0.95, p95_slo_ms).run(latencies),
        ]
        if stream:
            tests.append(QuantileTest("ttft_p95_ms", 0.95, ttft_p95_slo_ms).run(ttfts))
        if rates or min_tokens_per_second is not None:
            tests.append(
                QuantileTest(
                    "output_tokens_per_second_p50", 0.5, min_tokens_per_second, at_most=False
                ).run(rates)
            )
        headline = tests[1]
        decided = Decided(
            outcome=combine(tests),
            statistic=headline["estimate"],
            lower=headline["lower"],
            upper=headline["upper"],
            threshold=p95_slo_ms,
            explanation="; ".join(describe(t) for t in tests) + f"; at concurrency {used}",
        )
        return SampleList(
            samples,
            {
                "quantiles": tests,
                "unit": "ms",
                "concurrency": used,
                "requested_concurrency": concurrency,
                "streamed": stream,
                "p50_ms": tests[0]["estimate"],
                "p95_ms": headline["estimate"],
                "p95_slo_ms": p95_slo_ms,
            },
            decided,
        )

    return check
