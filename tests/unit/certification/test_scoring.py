"""Wilson bounds pinned to known values, and the verdict rules."""

from __future__ import annotations

import pytest

from app.certification.results import CheckOutcome as O
from app.certification.results import Verdict
from app.certification.scoring import decide_verdict, outcome_for, wilson_interval


@pytest.mark.parametrize(("passed", "trials", "lower", "upper"), [
    (8, 10, 0.4902, 0.9433),
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (5, 10, 0.2366, 0.7634),
    (60, 60, 0.9398, 1.0),
])
def test_wilson_interval_known_values(passed: int, trials: int, lower: float,
                                      upper: float) -> None:
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


@pytest.mark.parametrize(("outcomes", "verdict"), [
    ([(O.PASSED, True), (O.PASSED, False)], Verdict.CERTIFIED),
    ([(O.PASSED, True), (O.FAILED, False)], Verdict.CERTIFIED_WITH_WARNINGS),
    ([(O.PASSED, True), (O.ERRORED, False)], Verdict.CERTIFIED_WITH_WARNINGS),
    ([(O.FAILED, True), (O.ERRORED, True)], Verdict.NOT_CERTIFIED),
    ([(O.PASSED, True), (O.ERRORED, True)], Verdict.INCONCLUSIVE),
    ([(O.PASSED, True), (O.INCONCLUSIVE, True)], Verdict.INCONCLUSIVE),
    ([(O.PASSED, True), (O.SKIPPED, True)], Verdict.CERTIFIED),
    ([(O.SKIPPED, True)], Verdict.INCONCLUSIVE),
])
def test_verdict_rules(outcomes: list[tuple[O, bool]], verdict: Verdict) -> None:
    assert decide_verdict(outcomes) is verdict
