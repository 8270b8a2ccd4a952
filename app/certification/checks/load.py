"""Load: does the endpoint serve concurrent requests, and does it keep answering under them?

In each of `rounds` rounds, `serial_requests` chats one at a time, then `requests` at the
suite's `concurrency` (within the target's declared maximum), streamed when the target
declares streaming. Throughput at a level is answered requests per second of wall time; each
level keeps its best round, so that one stall of the host (or of the network) in a window
of a fraction of a second does not decide; the speedup is the ratio of the two. A server
that handles one request at a time has a speedup near 1 whatever the concurrency (it queues
requests, or empties the competing streams: either way, one answer at a time); one that
batches has one near the concurrency.

Every reply must carry content: a stream cut or emptied under concurrency (role chunk, then
`[DONE]`) fails with its own cause. The check fails when the Wilson upper bound of the
answered rate is below `min_answered_rate`, or the speedup is below `min_speedup`; it is
inconclusive when the answered rate's bounds straddle `min_answered_rate`. The speedup is
one measurement, not an interval: `min_speedup` sits far from both answers it separates
(1× for a serial server, several × for one that serves in parallel).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
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
from app.certification.checks.grading import EMPTY
from app.certification.checks.streaming import judge_stream
from app.certification.providers.base import ChatRequest, ChatResult
from app.certification.results import CheckOutcome, Grade, Sample
from app.certification.scoring import wilson_interval

SERIAL_BELOW = 1.5  # a speedup under this at concurrency ≥ 2: one request at a time


def throughput(samples: list[Sample], seconds: float) -> float:
    answered = sum(1 for s in samples if s.grade is Grade.PASS)
    return answered / seconds if seconds > 0 else 0.0


def finding(speedup: float | None, used: int) -> str:
    if speedup is None:
        return "throughput could not be measured: nothing was answered one at a time"
    ratio = f"throughput at {used} = {speedup:.1f}× throughput at 1"
    if used > 1 and speedup < SERIAL_BELOW:
        return f"serves one request at a time: {ratio}"
    return ratio


def _planned(requests: int = 16, serial_requests: int = 6, rounds: int = 3, **_: object) -> int:
    return rounds * (serial_requests + requests)


@register(
    "load",
    planned=_planned,
    description="Throughput at concurrency 1 and at the suite's concurrency; replies "
    "keep their content under load.",
)
def load(
    requests: int = 16,
    concurrency: int = 8,
    min_speedup: float = 2.0,
    min_answered_rate: float = 0.8,
    max_tokens: int = 16,
    serial_requests: int = 6,
    rounds: int = 3,
) -> CheckFn:
    async def check(ctx: CheckContext) -> list[Sample]:
        stream = ctx.target.supports("streaming")
        used = ctx.capped(concurrency)

        Ask = Callable[[int, int], tuple[str, ChatRequest, dict[str, Any]]]

        def phase(level: int, offset: int) -> Ask:
            def ask(index: int, _: int) -> tuple[str, ChatRequest, dict[str, Any]]:
                prompt, _token = chat_prompt(offset + index)
                return (
                    f"load-c{level}-{offset + index}",
                    ChatRequest(
                        messages=[{"role": "user", "content": prompt}],
                        max_tokens=max_tokens,
                        stream=stream,
                    ),
                    {"concurrency": level},
                )

            return ask

        def judge(index: int, request: ChatRequest, result: ChatResult) -> Judgement:
            if stream and (empty := judge_stream(result)) is not None:
                return empty
            if not result.text.strip() and not result.tool_calls:
                return Judgement(False, EMPTY)
            return Judgement(True)

        samples: list[Sample] = []
        serial_rates: list[float] = []
        loaded_rates: list[float] = []
        for round_ in range(rounds):
            offset = round_ * (serial_requests + requests)
            started = time.perf_counter()
            serial = await graded_chats(
                ctx, range(serial_requests), phase(1, offset), judge, concurrency=1
            )
            serial_rates.append(throughput(serial, time.perf_counter() - started))
            started = time.perf_counter()
            loaded = await graded_chats(
                ctx, range(requests), phase(used, offset + serial_requests), judge, concurrency=used
            )
            loaded_rates.append(throughput(loaded, time.perf_counter() - started))
            samples += [dataclasses.replace(s, index=offset + s.index) for s in serial]
            samples += [
                dataclasses.replace(s, index=offset + serial_requests + s.index) for s in loaded
            ]

        one, many = max(serial_rates), max(loaded_rates)
        speedup = many / one if one > 0 else None
        graded = [s for s in samples if s.grade is not Grade.ERROR]
        passed = sum(1 for s in graded if s.grade is Grade.PASS)
        lower, upper = wilson_interval(passed, len(graded))
        parts = [finding(speedup, used)]  # the engine adds the failures' reasons
        if graded and upper < min_answered_rate:
            outcome = CheckOutcome.FAILED
        elif speedup is not None and speedup < min_speedup:
            outcome = CheckOutcome.FAILED
            parts.append(f"below the minimum speedup of {min_speedup:g}×")
        elif not graded or speedup is None or lower < min_answered_rate:
            outcome = CheckOutcome.INCONCLUSIVE
        else:
            outcome = CheckOutcome.PASSED
        decided = Decided(
            outcome=outcome,
            statistic=None if speedup is None else round(speedup, 3),
            lower=None,
            upper=None,
            threshold=min_speedup,
            explanation="; ".join(parts),
        )
        return SampleList(
            samples,
            {
                "concurrency": used,
                "requested_concurrency": concurrency,
                "streamed": stream,
                "throughput_at_1": round(one, 3),
                f"throughput_at_{used}": round(many, 3),
                "speedup": None if speedup is None else round(speedup, 3),
                "min_speedup": min_speedup,
                "answered_rate_lower": round(lower, 4),
                "answered_rate_upper": round(upper, 4),
                "unit": "speedup",
            },
            decided,
        )

    return check
