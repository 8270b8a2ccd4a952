"""The shape of evidence: one record per sample and one per check, the same in the API's
evidence stream (`GET /v1/certifications/{id}/evidence`) and the CLI's evidence.jsonl."""

from __future__ import annotations

from typing import Any

from app.certification.certificates import check_summary
from app.certification.results import CheckResult, Sample


def sample_record(check: str, sample: Sample) -> dict[str, Any]:
    """A sample as evidence: the request, the reply excerpt, the grade and why, and what the
    endpoint said of its reply (finish_reason, usage, served model) with the retries it took."""
    return {
        "check": check,
        "index": sample.index,
        "prompt_id": sample.prompt_id,
        "grade": sample.grade.value,
        "request_summary": sample.request_summary,
        "response_excerpt": sample.response_excerpt,
        "latency_ms": sample.latency_ms,
        "ttft_ms": sample.ttft_ms,
        "status_code": sample.status_code,
        "error": sample.error,
        "error_cause": sample.error_cause,
        "finish_reason": sample.finish_reason,
        "usage": sample.usage,
        "served_model": sample.served_model,
        "retries": sample.retries,
        "detail": sample.detail,
    }


def check_record(result: CheckResult) -> dict[str, Any]:
    """A check's result as evidence: its certificate summary, explanation and details."""
    return check_summary(result) | {
        "explanation": result.explanation,
        "duration_seconds": result.duration_seconds,
        "details": result.details,
    }
