"""Typed results of a certification: sample grades, check outcomes, verdicts."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Grade(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"


class CheckOutcome(enum.StrEnum):
    PASSED = "passed"
    WARNED = "warned"
    FAILED = "failed"
    ERRORED = "errored"
    SKIPPED = "skipped"
    INCONCLUSIVE = "inconclusive"


class Verdict(enum.StrEnum):
    CERTIFIED = "certified"
    CERTIFIED_WITH_WARNINGS = "certified_with_warnings"
    NOT_CERTIFIED = "not_certified"
    INCONCLUSIVE = "inconclusive"


# The documented cap on stored response text, in characters.
RESPONSE_EXCERPT_CHARS = 2000


@dataclass(frozen=True)
class Sample:
    """One graded request with its evidence."""

    index: int
    prompt_id: str
    grade: Grade
    request_summary: dict[str, Any] = field(default_factory=dict)
    response_excerpt: str | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    status_code: int | None = None
    error: str | None = None
    error_cause: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None  # as the endpoint said it; "length": cut by max_tokens
    usage: dict[str, int] | None = None  # token counts the endpoint reported
    served_model: str | None = None  # the model the reply names
    retries: int = 0  # sample-level retries before this answer (429, 5xx, timeouts)


@dataclass(frozen=True)
class CheckResult:
    """The scored outcome of one check over its samples."""

    name: str
    outcome: CheckOutcome
    required: bool
    passed: int
    failed: int
    errored: int
    total: int
    statistic: float | None
    threshold: float | None
    lower: float | None
    upper: float | None
    duration_seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    samples: tuple[Sample, ...] = ()
    explanation: str = ""  # one line a person can read, built from the evidence
