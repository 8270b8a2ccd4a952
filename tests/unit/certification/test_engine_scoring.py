"""The engine's scoring of one check: capability unavailable, own outcomes, explanations."""

from __future__ import annotations

from app.certification.checks import Decided
from app.certification.engine import capability_unavailable, score
from app.certification.results import CheckOutcome, Grade, Sample
from app.certification.suites import CheckEntry

ENTRY = CheckEntry(name="embeddings", threshold=0.7)


def errored(status: int, error: str, retries: int = 2) -> Sample:
    return Sample(
        index=0,
        prompt_id="p",
        grade=Grade.ERROR,
        status_code=status,
        error=error,
        error_cause="server_error" if status >= 500 else "not_found",
        retries=retries,
    )


def test_the_same_permanent_answer_everywhere_is_an_unavailable_capability() -> None:
    assert capability_unavailable([errored(404, "HTTP 404: nope")] * 4)
    assert capability_unavailable([errored(500, "HTTP 500: no embeddings")] * 4)
    # Different 5xx bodies, an answer among them, or 5xx never retried: transient.
    assert not capability_unavailable([errored(500, "a"), errored(500, "b")])
    assert not capability_unavailable([errored(500, "a", retries=0)] * 4)
    passed = Sample(index=1, prompt_id="p", grade=Grade.PASS, status_code=200)
    assert not capability_unavailable([errored(404, "x"), passed])


def test_an_unavailable_capability_fails_and_says_so() -> None:
    result = score(ENTRY, [errored(500, "HTTP 500: no embeddings")] * 6, 1.0, 0.2)
    assert result.outcome is CheckOutcome.FAILED and result.failed == 6 and result.errored == 0
    assert result.details["cause"] == "capability_unavailable"
    assert result.explanation.startswith("all 6 requests were refused the same way")


def test_too_many_transient_errors_stay_errored() -> None:
    samples = [errored(500, f"HTTP 500: {i}") for i in range(5)]
    result = score(ENTRY, samples, 1.0, 0.2)
    assert result.outcome is CheckOutcome.ERRORED
    assert result.explanation == "nothing could be graded; 5 of 5 requests errored (server_error 5)"


def test_a_check_deciding_its_own_outcome_keeps_its_explanation_first() -> None:
    ok = [Sample(index=i, prompt_id="p", grade=Grade.PASS, latency_ms=10.0) for i in range(80)]
    decided = Decided(CheckOutcome.FAILED, 300.0, 250.0, 320.0, 200.0, "latency p95 300 ms")
    result = score(CheckEntry(name="latency"), ok, 1.0, 0.2, {}, decided)
    assert (result.outcome, result.statistic, result.threshold) == (
        CheckOutcome.FAILED,
        300.0,
        200.0,
    )
    assert result.explanation == "latency p95 300 ms"
