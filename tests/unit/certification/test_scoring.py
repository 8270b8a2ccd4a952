"""Wilson bounds pinned to known values, and the verdict rules."""

from __future__ import annotations

import pytest

from app.certification.results import CheckOutcome as O
from app.certification.results import Verdict
from app.certification.scoring import decide_verdict, outcome_for, wilson_interval


@pytest.mark.parametrize(
    ("passed", "trials", "lower", "upper"),
    [
        (8, 10, 0.4902, 0.9433),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (5, 10, 0.2366, 0.7634),
        (60, 60, 0.9398, 1.0),
    ],
)
def test_wilson_interval_known_values(passed: int, trials: int, lower: float, upper: float) -> None:
    got = wilson_interval(passed, trials)
    assert got == pytest.approx((lower, upper), abs=5e-5)


def test_wilson_without_trials_is_uninformative() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_outcome_pass_fail_inconclusive() -> None:
    assert outcome_for(10, 0, 0, 0.7, 0.2)[0] is O.PASSED
    assert outcome_for(0, 10, 0, 0.7, 0.2)[0] is O.FAILED
    assert outcome_for(8, 2, 0, 0.7, 0.2)[0] is O.INCONCLUSIVE


def test_errors_are_not_failures_but_too_many_make_the_check_errored() -> None:
    outcome, rate, _, _ = outcome_for(10, 0, 2, 0.7, 0.2)
    assert outcome is O.PASSED and rate == 1.0
    assert outcome_for(10, 0, 5, 0.7, 0.2)[0] is O.ERRORED
    assert outcome_for(0, 0, 3, 0.7, 0.2)[0] is O.ERRORED


@pytest.mark.parametrize(
    ("outcomes", "verdict"),
    [
        ([(O.PASSED, True), (O.PASSED, False)], Verdict.CERTIFIED),
        ([(O.PASSED, True), (O.FAILED, False)], Verdict.CERTIFIED_WITH_WARNINGS),
        ([(O.PASSED, True), (O.ERRORED, False)], Verdict.CERTIFIED_WITH_WARNINGS),
        ([(O.FAILED, True), (O.ERRORED, True)], Verdict.NOT_CERTIFIED),
        ([(O.PASSED, True), (O.ERRORED, True)], Verdict.INCONCLUSIVE),
        ([(O.PASSED, True), (O.INCONCLUSIVE, True)], Verdict.INCONCLUSIVE),
        ([(O.PASSED, True), (O.SKIPPED, True)], Verdict.CERTIFIED),
        ([(O.SKIPPED, True)], Verdict.INCONCLUSIVE),
    ],
)
def test_verdict_rules(outcomes: list[tuple[O, bool]], verdict: Verdict) -> None:
    assert decide_verdict(outcomes) is verdict


def test_quantile_interval_from_order_statistics() -> None:
    from app.certification.scoring import quantile_interval

    # n = 100, q = 0.95: the ranks (90, 100) hold the true p95 with at least 95 % confidence.
    assert quantile_interval(range(1, 101), 0.95) == (95, 90, 100)
    # A p95 has an upper bound only from 72 values on (1 − 0.95^72 ≥ 0.975).
    assert quantile_interval(range(1, 72), 0.95)[2] is None
    assert quantile_interval(range(1, 73), 0.95)[2] == 72
    assert quantile_interval(range(1, 25), 0.5) == (12, 7, 18)
    assert quantile_interval([], 0.5) == (None, None, None)


def test_a_quantile_against_its_slo() -> None:
    from app.certification.scoring import quantile_outcome

    assert quantile_outcome(10.0, 90.0, 100.0) is O.PASSED
    assert quantile_outcome(110.0, None, 100.0) is O.FAILED  # even the lower bound is over
    assert quantile_outcome(50.0, None, 100.0) is O.INCONCLUSIVE  # no upper bound yet
    assert quantile_outcome(50.0, 80.0, 40.0, at_most=False) is O.PASSED
    assert quantile_outcome(10.0, 30.0, 40.0, at_most=False) is O.FAILED


def test_the_quantile_interval_covers_the_true_quantile_as_promised() -> None:
    """Distribution-free: on a skewed distribution the 95 % interval of the p95 holds the true
    p95 in at least about 95 % of repeated samples (seeded, so the count is fixed)."""
    import math
    import random

    from app.certification.scoring import quantile_interval

    rng = random.Random(7)
    true_p95 = -math.log(0.05)  # exponential(1)
    covered = 0
    for _ in range(400):
        _, lower, upper = quantile_interval([rng.expovariate(1.0) for _ in range(100)], 0.95)
        covered += lower is not None and upper is not None and lower <= true_p95 <= upper
    assert covered / 400 >= 0.93
