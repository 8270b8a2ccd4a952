"""Regressions against the last certified result: pass rates by Newcombe's interval,
quantiles by their order-statistic intervals, the suite's policy, and the error rates the
methods promise (docs/methodology.md)."""

from __future__ import annotations

import random

import pytest

from app.certification import certificates as certs
from app.certification.checks.latency import QuantileTest
from app.certification.regressions import (
    NO_BASELINE,
    QUANTILE_METHOD,
    RATE_METHOD,
    Baseline,
    Figures,
    assess,
    compare,
    figures_of,
    quantiles_of,
)
from app.certification.results import CheckOutcome, CheckResult
from app.certification.scoring import outcome_for
from app.certification.suites import CheckEntry


def rate_result(name: str, passed: int, failed: int, threshold: float = 0.4) -> CheckResult:
    outcome, rate, lower, upper = outcome_for(passed, failed, 0, threshold, 0.2)
    return CheckResult(
        name=name,
        outcome=outcome,
        required=True,
        passed=passed,
        failed=failed,
        errored=0,
        total=passed + failed,
        statistic=rate,
        threshold=threshold,
        lower=lower,
        upper=upper,
        duration_seconds=1.0,
        details={"check": "dataset"},
        explanation=f"{passed} of {passed + failed} passed",
    )


def latency_result(values: list[float]) -> CheckResult:
    tests = [
        QuantileTest("latency_p50_ms", 0.5, None).run(values),
        QuantileTest("latency_p95_ms", 0.95, 5000.0).run(values),
    ]
    return CheckResult(
        name="latency",
        outcome=CheckOutcome.PASSED,
        required=True,
        passed=len(values),
        failed=0,
        errored=0,
        total=len(values),
        statistic=tests[1]["estimate"],
        threshold=5000.0,
        lower=tests[1]["lower"],
        upper=tests[1]["upper"],
        duration_seconds=1.0,
        details={"check": "latency", "quantiles": tests, "unit": "ms"},
        explanation="latency p95 …",
    )


def baseline_of(*results: CheckResult) -> Baseline:
    return Baseline(
        "base-1",
        "team@1.0.0",
        "2026-01-01T00:00:00Z",
        {r.name: figures_of(r.__dict__) for r in results},
    )


def test_a_clear_drop_is_regressed() -> None:
    before, now = rate_result("qa", 58, 2), rate_result("qa", 35, 25)
    judged = assess(now, "report", baseline_of(before))
    record = judged.details["regression"]
    assert record["compared"] and record["regressed"] and record["method"] == RATE_METHOD
    assert record["baseline"] == "base-1"
    assert record["before"] == {"passed": 58, "graded": 60, "rate": pytest.approx(58 / 60)}
    assert record["upper"] < 0 and record["lower"] < record["difference"] < record["upper"]
    # Reported, and the verdict stands: the check still passes its threshold.
    assert judged.outcome is CheckOutcome.PASSED
    assert "regressed against certification base-1" in judged.explanation


def test_a_small_drop_within_noise_is_not() -> None:
    judged = assess(rate_result("qa", 55, 5), "forbid", baseline_of(rate_result("qa", 58, 2)))
    record = judged.details["regression"]
    assert record["compared"] and not record["regressed"]
    assert record["difference"] < 0 < record["upper"]
    assert judged.outcome is CheckOutcome.PASSED and "regressed" not in judged.explanation


def test_forbid_fails_a_regressed_check_and_says_against_what() -> None:
    judged = assess(rate_result("qa", 35, 25), "forbid", baseline_of(rate_result("qa", 58, 2)))
    assert judged.outcome is CheckOutcome.FAILED
    assert judged.details["cause"] == "regressed"
    assert judged.explanation.startswith("regressed against certification base-1: pass rate")


def test_an_errored_check_stays_errored_under_forbid() -> None:
    errored = rate_result("qa", 10, 20)
    errored = CheckResult(**{**errored.__dict__, "outcome": CheckOutcome.ERRORED})
    judged = assess(errored, "forbid", baseline_of(rate_result("qa", 58, 2)))
    assert judged.details["regression"]["regressed"]
    assert judged.outcome is CheckOutcome.ERRORED


def test_no_baseline_regresses_nothing_and_says_so() -> None:
    judged = assess(rate_result("qa", 1, 59), "forbid", None)
    assert judged.details["regression"] == {
        "baseline": None,
        "policy": "forbid",
        "compared": False,
        "regressed": False,
        "reason": NO_BASELINE,
    }
    assert judged.outcome is CheckOutcome.FAILED  # failed on its own threshold, not a regression
    assert "cause" not in judged.details


def test_a_check_the_baseline_did_not_run_is_not_compared() -> None:
    judged = assess(rate_result("new", 1, 59), "forbid", baseline_of(rate_result("qa", 58, 2)))
    record = judged.details["regression"]
    assert record["baseline"] == "base-1" and not record["compared"] and not record["regressed"]


def test_a_latency_increase_is_regressed_by_separated_intervals() -> None:
    rng = random.Random(7)
    fast = [rng.gauss(200, 20) for _ in range(120)]
    slow = [rng.gauss(320, 30) for _ in range(120)]
    judged = assess(latency_result(slow), "forbid", baseline_of(latency_result(fast)))
    record = judged.details["regression"]
    assert record["method"] == QUANTILE_METHOD and record["regressed"]
    p95 = next(q for q in record["quantiles"] if q["metric"] == "latency_p95_ms")
    assert p95["regressed"] and p95["after"]["lower"] > p95["before"]["upper"]
    assert judged.outcome is CheckOutcome.FAILED and "latency p95" in judged.explanation
    # The same speed measured again: the intervals overlap, nothing regressed.
    again = [rng.gauss(200, 20) for _ in range(120)]
    same = assess(latency_result(again), "forbid", baseline_of(latency_result(fast)))
    assert not same.details["regression"]["regressed"]
    assert same.outcome is CheckOutcome.PASSED
    # Faster is an improvement, never a regression.
    quicker = compare(
        figures_of(latency_result(fast).__dict__), figures_of(latency_result(slow).__dict__)
    )
    assert quicker is not None and quicker.improved and not quicker.regressed


def test_a_p95_without_an_upper_bound_cannot_separate() -> None:
    """Under 72 values a p95 has no upper bound at 95 %: it decides nothing."""
    small = [100.0 + i for i in range(30)]
    later = [900.0 + i for i in range(30)]
    p95_before = quantiles_of(latency_result(small).details["quantiles"])[1]
    assert p95_before.upper is None
    judged = assess(latency_result(later), "report", baseline_of(latency_result(small)))
    p95 = next(q for q in judged.details["regression"]["quantiles"] if "p95" in q["metric"])
    assert not p95["regressed"]
    p50 = next(q for q in judged.details["regression"]["quantiles"] if "p50" in q["metric"])
    assert p50["regressed"]  # the median's interval is bounded: the rise shows there


def test_the_certificate_summary_is_a_baseline_of_its_own() -> None:
    """A format-3 check summary holds what the next run is compared with (the CLI's
    --baseline reads nothing else): counts, quantiles, and the regression record signed."""
    before = latency_result([200.0 + i for i in range(100)])
    summary = certs.check_summary(before)
    assert all(isinstance(q["estimate"], str) for q in summary["quantiles"])  # no floats
    assert figures_of(summary) == figures_of(before.__dict__)
    judged = assess(rate_result("qa", 35, 25), "report", baseline_of(rate_result("qa", 58, 2)))
    signed = certs.check_summary(judged)["regression"]
    assert signed["regressed"] is True and signed["baseline"] == "base-1"
    assert signed["upper"].startswith("-0.")


def test_the_suite_declares_the_policy() -> None:
    assert CheckEntry(name="chat").regression == "report"
    assert CheckEntry(name="chat", regression="forbid").regression == "forbid"
    with pytest.raises(ValueError, match="regression"):
        CheckEntry(name="chat", regression="never")  # type: ignore[arg-type]


def false_alarms(p: float, n: int, trials: int, rng: random.Random) -> float:
    alarms = 0
    for _ in range(trials):
        before = sum(rng.random() < p for _ in range(n))
        after = sum(rng.random() < p for _ in range(n))
        change = compare(Figures(after, n), Figures(before, n))
        alarms += bool(change and change.regressed)
    return alarms / trials


@pytest.mark.parametrize(("p", "n"), [(0.95, 40), (0.8, 60), (0.6, 100), (0.99, 200)])
def test_the_rate_method_rarely_cries_regression_when_nothing_changed(p: float, n: int) -> None:
    """Same true pass rate before and after: a drop is called in at most 2.5 % of runs
    (one side of a 95 % interval), with room for simulation noise."""
    rate = false_alarms(p, n, 2000, random.Random(f"{p}-{n}"))
    assert rate <= 0.035, rate


def test_the_rate_method_sees_a_real_drop() -> None:
    rng = random.Random(11)
    caught = 0
    for _ in range(500):
        before = sum(rng.random() < 0.95 for _ in range(60))
        after = sum(rng.random() < 0.70 for _ in range(60))
        change = compare(Figures(after, 60), Figures(before, 60))
        caught += bool(change and change.regressed)
    assert caught / 500 >= 0.9


def test_the_quantile_method_rarely_cries_regression_when_nothing_changed() -> None:
    """Two 95 % intervals of the same quantile separate only when one misses it: at most
    about 5 %, far less in practice."""
    rng = random.Random(3)
    alarms = 0
    trials = 400
    for _ in range(trials):
        before = [rng.lognormvariate(5, 0.4) for _ in range(100)]
        after = [rng.lognormvariate(5, 0.4) for _ in range(100)]
        change = compare(
            figures_of(latency_result(after).__dict__), figures_of(latency_result(before).__dict__)
        )
        alarms += bool(change and change.regressed)
    assert alarms / trials <= 0.05
