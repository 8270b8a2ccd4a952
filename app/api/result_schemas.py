"""Response models of suites, results, evidence, certificates and signing keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class SuiteCheck(BaseModel):
    key: str = Field(description="The name results are stored under (id, else the check name).")
    name: str
    description: str
    required: bool
    threshold: float
    params: dict[str, Any]
    requires: str | None = Field(None, description="The capability the target must declare.")


class SuiteSummary(BaseModel):
    name: str
    version: str
    content_hash: str
    description: str


class SuiteDetail(SuiteSummary):
    max_error_rate: float
    datasets: list[str]
    checks: list[SuiteCheck]


class SuiteList(BaseModel):
    items: list[SuiteSummary]


class SuitePath(BaseModel):
    name: str


class CheckResultView(BaseModel):
    name: str
    check: str | None
    outcome: str
    required: bool
    passed: int
    failed: int
    errored: int
    total: int
    statistic: float | None = Field(description="The pass rate over graded samples.")
    lower: float | None = Field(description="Wilson 95 % lower bound of the pass rate.")
    upper: float | None = Field(description="Wilson 95 % upper bound of the pass rate.")
    threshold: float | None
    duration_seconds: float
    attempt: int
    details: dict[str, Any]


class ResultsView(BaseModel):
    certification_id: uuid.UUID
    status: str
    verdict: str | None
    suite: str
    checks: list[CheckResultView]


class EvidenceLine(BaseModel):
    """One line of the evidence stream (application/x-ndjson)."""

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


class SigningKeyView(BaseModel):
    key_id: str
    algorithm: Literal["Ed25519"] = "Ed25519"
    public_key: str = Field(description="Raw 32-byte Ed25519 public key, base64.")
    created_at: datetime
    retired_at: datetime | None


class SigningKeyList(BaseModel):
    """Every key that may have signed a certificate; `modelcert verify --keys` reads this."""

    keys: list[SigningKeyView]
