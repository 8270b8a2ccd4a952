"""Regressions: is a check significantly worse than in the target's last certified result?

A check graded per sample compares pass rates: the difference now minus before with
Newcombe's hybrid score interval (scoring.newcombe_difference); a drop is significant when
the whole 95 % interval lies below zero. A check decided by quantiles (latency, TTFT,
tokens per second) compares each quantile's distribution-free 95 % interval
(scoring.quantile_interval) with the one before: worse when the two intervals separate on
the bad side. docs/methodology.md gives both methods and their error rates.

Pure: the caller gives the baseline (the worker loads it from Postgres, the CLI from a
previous certificate), so the worker and the CLI sign the same comparison. Without a
baseline nothing is regressed, and each check says so (`baseline: null`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from app.certification.results import CheckOutcome, CheckResult
from app.certification.scoring import newcombe_difference

RATE_METHOD = "newcombe-hybrid-score"
QUANTILE_METHOD = "order-statistic-intervals"
REGRESSED = "regressed"  # the cause of a check that failed for regressing (policy forbid)
Policy = Literal["report", "forbid"]
# The outcomes a forbidden regression turns into `failed`: an errored check stays errored
# (too many errors to stand on its measurement) and a failed one is failed already.
OVERRIDDEN = (CheckOutcome.PASSED, CheckOutcome.WARNED, CheckOutcome.INCONCLUSIVE)
NO_BASELINE = "no earlier certified result of this suite for this target: nothing to compare"


@dataclass(frozen=True)
class Quantile:
    """One quantile of a check with its 95 % order-statistic interval (None: unbounded)."""

    metric: str
    estimate: float | None
    lower: float | None
    upper: float | None
    n: int = 0
    at_most: bool = True  # lower is better (a latency); else higher is (tokens per second)


@dataclass(frozen=True)
class Figures:
    """What one check result says that a later one is compared with."""

    passed: int
    graded: int
    quantiles: tuple[Quantile, ...] = ()


@dataclass(frozen=True)
class Baseline:
    """The target's last certified certification of the same suite, per check."""

    certification_id: str
    suite_ref: str
    issued_at: str  # UTC, certificates.TIME_FORMAT
    checks: Mapping[str, Figures]

    def reference(self) -> dict[str, str]:
        """What a certificate signs of its baseline."""
        return {
            "certification_id": self.certification_id,
            "suite": self.suite_ref,
            "issued_at": self.issued_at,
        }


def _number(value: Any) -> float | None:
    """A float from a stored result (float) or a signed summary ("0.9450")."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _count(value: Any) -> int:
    number = _number(value)
    return max(0, int(number)) if number is not None else 0


def quantiles_of(items: Any) -> tuple[Quantile, ...]:
    """The quantiles of a latency check's details (or of its certificate summary)."""
    if not isinstance(items, Sequence) or isinstance(items, str):
        return ()
    found = []
    for item in items:
        if isinstance(item, Mapping) and isinstance(item.get("metric"), str):
            found.append(
                Quantile(
                    metric=item["metric"],
                    estimate=_number(item.get("estimate")),
                    lower=_number(item.get("lower")),
                    upper=_number(item.get("upper")),
                    n=_count(item.get("n")),
                    at_most=item.get("slo_is", "at_most") != "at_least",
                )
            )
    return tuple(found)


def figures_of(record: Mapping[str, Any]) -> Figures:
    """From a stored check result, an API results view, an evidence check line or a
    certificate's check summary: all hold passed and failed, and quantiles in `details` or
    (a certificate's summary) beside them."""
    details = record.get("details")
    quantiles = details.get("quantiles") if isinstance(details, Mapping) else None
    passed, failed = _count(record.get("passed")), _count(record.get("failed"))
    return Figures(passed, passed + failed, quantiles_of(quantiles or record.get("quantiles")))


def result_figures(result: CheckResult) -> Figures:
    return Figures(
        result.passed, result.passed + result.failed, quantiles_of(result.details.get("quantiles"))
    )


@dataclass(frozen=True)
class Comparison:
    """A check now against its baseline: the method, whether it is significantly worse or
    better, the figures (JSON-ready) and a line a person can read."""

    method: str
    regressed: bool
    improved: bool
    figures: dict[str, Any]
    summary: str


def compare(after: Figures, before: Figures) -> Comparison | None:
    """None when nothing can be compared (no graded samples, or no quantile in common)."""
    if after.quantiles or before.quantiles:
        return _compare_quantiles(after.quantiles, before.quantiles)
    if after.graded <= 0 or before.graded <= 0:
        return None
    difference, lower, upper = newcombe_difference(
        after.passed, after.graded, before.passed, before.graded
    )
    rate_now, rate_before = after.passed / after.graded, before.passed / before.graded
    return Comparison(
        method=RATE_METHOD,
        regressed=upper < 0,
        improved=lower > 0,
        figures={
            "before": {"passed": before.passed, "graded": before.graded, "rate": rate_before},
            "after": {"passed": after.passed, "graded": after.graded, "rate": rate_now},
            "difference": round(difference, 4),
            "lower": round(lower, 4),
            "upper": round(upper, 4),
        },
        summary=(
            f"pass rate {rate_before:.2f} → {rate_now:.2f} (difference {difference:+.2f}, "
            f"95 % CI {lower:+.2f} to {upper:+.2f})"
        ),
    )


def _separated(worse: Quantile, better: Quantile) -> bool:
    """`worse`'s interval lies wholly on the bad side of `better`'s (an unbounded end never
    separates)."""
    if worse.at_most:
        return worse.lower is not None and better.upper is not None and worse.lower > better.upper
    return worse.upper is not None and better.lower is not None and worse.upper < better.lower


def _compare_quantiles(after: Sequence[Quantile], before: Sequence[Quantile]) -> Comparison | None:
    earlier = {q.metric: q for q in before}
    rows: list[dict[str, Any]] = []
    worse: list[tuple[Quantile, Quantile]] = []
    better: list[tuple[Quantile, Quantile]] = []
    for now in after:
        then = earlier.get(now.metric)
        if then is None or now.estimate is None or then.estimate is None:
            continue
        regressed, improved = _separated(now, then), _separated(then, now)
        rows.append(
            {
                "metric": now.metric,
                "before": {"estimate": then.estimate, "lower": then.lower, "upper": then.upper},
                "after": {"estimate": now.estimate, "lower": now.lower, "upper": now.upper},
                "regressed": regressed,
            }
        )
        if regressed:
            worse.append((now, then))
        elif improved:
            better.append((now, then))
    if not rows:
        return None
    shown = worse or better or [(q, earlier[q.metric]) for q in after if q.metric in earlier][:1]
    return Comparison(
        method=QUANTILE_METHOD,
        regressed=bool(worse),
        improved=bool(better) and not worse,
        figures={"quantiles": rows},
        summary="; ".join(_describe(now, then) for now, then in shown),
    )


def _bounds(q: Quantile) -> str:
    def edge(value: float | None) -> str:
        return "unbounded" if value is None else f"{value:g}"

    return f"{edge(q.lower)}–{edge(q.upper)}"


def _describe(now: Quantile, then: Quantile) -> str:
    name = now.metric.replace("_ms", "").replace("_", " ")
    unit = " ms" if now.metric.endswith("_ms") else ""
    return (
        f"{name} {then.estimate:g}{unit} → {now.estimate:g}{unit} "
        f"(95 % CI {_bounds(then)} → {_bounds(now)})"
    )


def assess(result: CheckResult, policy: Policy, baseline: Baseline | None) -> CheckResult:
    """The result with `details["regression"]`; a significant drop under `forbid` fails it
    (cause `regressed`), under `report` (the default) it is reported and the outcome stands."""
    record: dict[str, Any] = {
        "baseline": baseline.certification_id if baseline is not None else None,
        "policy": policy,
        "compared": False,
        "regressed": False,
    }
    comparison = None
    if baseline is None:
        record["reason"] = NO_BASELINE
    elif result.name not in baseline.checks:
        record["reason"] = "the baseline has no result for this check"
    else:
        comparison = compare(result_figures(result), baseline.checks[result.name])
        if comparison is None:
            record["reason"] = "nothing measured on one side (no graded samples or quantiles)"
    if comparison is not None:
        record |= {
            "compared": True,
            "regressed": comparison.regressed,
            "method": comparison.method,
            **comparison.figures,
        }
    details = {**result.details, "regression": record}
    if comparison is None or not comparison.regressed or baseline is None:
        return replace(result, details=details)
    finding = f"regressed against certification {baseline.certification_id}: {comparison.summary}"
    if policy == "forbid" and result.outcome in OVERRIDDEN:
        return replace(
            result,
            outcome=CheckOutcome.FAILED,
            details={**details, "cause": REGRESSED},
            explanation=f"{finding} (the suite forbids a regression); {result.explanation}",
        )
    return replace(result, details=details, explanation=f"{result.explanation}; {finding}")
