"""Response models of suites, results, evidence, certificates and signing keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class SuiteCheck(BaseModel):
    key: str = Field(description="The name results are stored under (id, else the check name).")
    name: str
    description: str
    required: bool
    threshold: float | None = Field(
        description=(
            "The pass-rate threshold; latency and load decide by their own rules (params)."
        )
    )
    params: dict[str, Any]
    requires: str | None = Field(None, description="The capability the target must declare.")
    regression: Literal["report", "forbid"] = Field(
        "report",
        description="Against the target's last certified result: forbid fails a significant "
        "drop, report only says so.",
    )


class SuiteSummary(BaseModel):
    name: str
    version: str
    content_hash: str
    description: str
    builtin: bool = Field(
        True, description="Shipped with the service; else the organization's own (issue #23)."
    )
    ref: str = Field("", description="name@version: what a certification may name.")
    covers: list[str] = Field(
        description=(
            "The checks the suite requires: what its certificate vouches for. A suite is at "
            "least as strong as another when it covers all of the other's."
        )
    )


class SuiteDetail(SuiteSummary):
    max_error_rate: float
    run: dict[str, Any] = Field(
        description=(
            "Run conditions: concurrency, timeouts and sample retries, the same wherever the "
            "suite runs; a target's declared maximum concurrency caps them."
        )
    )
    datasets: list[str]
    checks: list[SuiteCheck]


class SuiteList(BaseModel):
    items: list[SuiteSummary]


class SuitePath(BaseModel):
    name: str


class RegressionView(BaseModel):
    """A check against the same check of the target's last certified certification of the
    suite (docs/methodology.md, "Regressions")."""

    baseline: str | None = Field(
        description="The baseline certification's id; null: there was none (nothing regressed)."
    )
    policy: Literal["report", "forbid"] = Field(
        description="The suite's: forbid fails a regressed check, report only says so."
    )
    compared: bool
    regressed: bool = Field(description="Significantly worse than the baseline, at 95 %.")
    method: str | None = Field(
        None, description="newcombe-hybrid-score (pass rates) or order-statistic-intervals."
    )
    reason: str | None = Field(None, description="Why the check was not compared.")
    before: dict[str, Any] | None = Field(None, description="passed, graded, rate before.")
    after: dict[str, Any] | None = Field(None, description="passed, graded, rate now.")
    difference: float | None = Field(None, description="Pass rate now minus before.")
    lower: float | None = Field(None, description="95 % lower bound of the difference.")
    upper: float | None = Field(
        None, description="95 % upper bound of the difference: below 0 is a regression."
    )
    quantiles: list[dict[str, Any]] | None = Field(
        None, description="Per quantile: metric, before and after with bounds, regressed."
    )


class BaselineView(BaseModel):
    certification_id: str
    suite: str | None
    verdict: str | None
    issued_at: str | None = Field(description="Its certificate's issue time (UTC).")


class CheckResultView(BaseModel):
    name: str
    check: str | None
    outcome: str
    required: bool
    passed: int
    failed: int
    errored: int
    total: int
    statistic: float | None = Field(
        description=(
            "The pass rate over graded samples; for latency the p95 in ms, for load the speedup "
            "(details.unit)."
        )
    )
    lower: float | None = Field(description="95 % lower bound (Wilson, or order statistics).")
    upper: float | None = Field(description="95 % upper bound (Wilson, or order statistics).")
    threshold: float | None
    explanation: str = Field("", description="One line built from the evidence.")
    duration_seconds: float
    attempt: int
    regression: RegressionView | None = Field(
        None, description="Against the baseline; null for results stored before regressions."
    )
    details: dict[str, Any]


class ResultsView(BaseModel):
    certification_id: uuid.UUID
    status: str
    verdict: str | None
    suite: str
    baseline: BaselineView | None = Field(
        None,
        description=(
            "The target's last certified certification of the same suite@version, what each "
            "check was compared with; null for a first certification (nothing regressed)."
        ),
    )
    regressed: list[str] = Field(
        default_factory=list, description="The checks significantly worse than the baseline."
    )
    checks: list[CheckResultView]


class EvidenceLine(BaseModel):
    """One sample as evidence: a line of the evidence stream (application/x-ndjson), an item
    of the samples list."""

    check: str
    index: int
    prompt_id: str
    grade: Literal["pass", "fail", "error"]
    request_summary: dict[str, Any]
    response_excerpt: str | None
    latency_ms: float | None
    ttft_ms: float | None
    status_code: int | None
    error: str | None
    error_cause: str | None
    finish_reason: str | None = Field(
        description="As the endpoint said; length: cut by max_tokens."
    )
    usage: dict[str, int] | None = Field(description="Token counts the endpoint reported.")
    served_model: str | None = Field(description="The model the reply names.")
    retries: int = Field(description="Sample-level retries before this answer.")
    detail: dict[str, Any] = Field(description="How the sample was graded, and why.")


class SampleQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    check: str | None = Field(None, max_length=100, description="Only this check's samples.")
    cursor: str | None = Field(None, max_length=200)
    limit: int = Field(100, ge=1, le=1000)


class SampleList(BaseModel):
    """A page of evidence, in the order of the stream; `next_cursor` is null on the last."""

    items: list[EvidenceLine]
    next_cursor: str | None


class CertificateView(BaseModel):
    """A signed certificate: `payload` + `signature` verify with `modelcert verify`."""

    payload: dict[str, Any]
    signature: str
    id: uuid.UUID
    status: Literal["valid", "not_certified", "expired", "revoked", "superseded"]
    issued_at: datetime
    valid_until: datetime
    revoked_at: datetime | None
    superseded_at: datetime | None


class TargetCertificateQuery(BaseModel):
    region: str | None = Field(None, max_length=63)
    suite: str | None = Field(
        None,
        max_length=100,
        description=(
            "The suite whose current certificate to return; without it, the strongest suite's "
            "(a weaker suite's newer certificate never stands in for it)."
        ),
    )


class SigningKeyView(BaseModel):
    key_id: str
    algorithm: Literal["Ed25519"] = "Ed25519"
    public_key: str = Field(description="Raw 32-byte Ed25519 public key, base64.")
    created_at: datetime
    retired_at: datetime | None


class SigningKeyList(BaseModel):
    """Every key that may have signed a certificate; `modelcert verify --keys` reads this."""

    keys: list[SigningKeyView]
