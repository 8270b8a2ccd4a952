"""A finished check as the engine hands it to the job path, for tests that store one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.certification.results import CheckOutcome, CheckResult, Grade, Sample


def check_result(name: str, samples: Sequence[Sample], **fields: Any) -> CheckResult:
    """A required check of `samples`, its counts and pass rate taken from their grades;
    `fields` sets any other field (outcome, threshold, bounds, details...)."""
    passed = sum(s.grade is Grade.PASS for s in samples)
    failed = sum(s.grade is Grade.FAIL for s in samples)
    graded = passed + failed
    values: dict[str, Any] = {
        "name": name,
        "outcome": CheckOutcome.PASSED,
        "required": True,
        "passed": passed,
        "failed": failed,
        "errored": len(samples) - graded,
        "total": len(samples),
        "statistic": passed / graded if graded else None,
        "threshold": 0.5,
        "lower": 0.1,
        "upper": 1.0,
        "duration_seconds": 0.01,
        "details": {"check": name},
        "samples": tuple(samples),
    }
    return CheckResult(**(values | fields))
