"""One line a person can read for each check result, built from its evidence.

"0 of 10 passed (95 % CI 0.00–0.28, threshold 0.60); 10 of 10 repeated the prompt".
The counts come from the samples' grades and their `detail["reason"]` / `error_cause`;
a check that decides its own outcome (latency, load) leads with its own finding.
"""

from __future__ import annotations

from collections import Counter

from app.certification.checks.grading import REASONS
from app.certification.providers.base import ErrorCause
from app.certification.results import CheckOutcome, CheckResult, Grade

MOST_REASONS = 3  # the commonest reasons named; the evidence holds the rest


def _tally(result: CheckResult, graded: int) -> list[str]:
    reasons = Counter(
        str(s.detail["reason"])
        for s in result.samples
        if s.grade is Grade.FAIL and s.detail.get("reason")
    )
    reasons.update(
        str(s.error_cause)
        for s in result.samples
        if s.grade is Grade.FAIL and s.error_cause and not s.detail.get("reason")
    )
    parts = []
    for reason, count in reasons.most_common(MOST_REASONS):
        parts.append(f"{count} of {graded} {REASONS.get(reason, reason.replace('_', ' '))}")
    return parts


def _errors(result: CheckResult) -> str | None:
    if not result.errored:
        return None
    causes = Counter(
        str(s.error_cause or "error") for s in result.samples if s.grade is Grade.ERROR
    )
    named = ", ".join(f"{cause} {count}" for cause, count in causes.most_common(MOST_REASONS))
    return f"{result.errored} of {result.total} requests errored ({named})"


def explain(result: CheckResult, own: str = "") -> str:
    cause = result.details.get("cause")
    graded = result.passed + result.failed
    parts: list[str] = []
    if cause == ErrorCause.CAPABILITY_UNAVAILABLE:
        first = next((s for s in result.samples if s.error), None)
        seen = f" ({first.error[:80]})" if first and first.error else ""
        parts.append(
            f"all {result.total} requests were refused the same way{seen}: the "
            f"declared capability is not served"
        )
    elif cause == ErrorCause.MODEL_NOT_LISTED:
        parts.append(
            "the endpoint does not list the model asked for: the certification stopped here"
        )
    elif own:
        parts.append(own)
    elif result.outcome is CheckOutcome.ERRORED and not graded:
        parts.append("nothing could be graded")
    else:
        line = f"{result.passed} of {graded} passed"
        if result.lower is not None and result.upper is not None and result.threshold is not None:
            line += (
                f" (95 % CI {result.lower:.2f}–{result.upper:.2f}, "
                f"threshold {result.threshold:.2f})"
            )
        parts.append(line)
    if cause != ErrorCause.CAPABILITY_UNAVAILABLE:
        parts.extend(_tally(result, graded))
        errors = _errors(result)
        if errors:
            parts.append(errors)
    if result.outcome is CheckOutcome.ERRORED and graded:
        parts.append("too many errors to decide")
    return "; ".join(parts)
