"""Request and response models; the OpenAPI document is generated from these."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.:/@-]*$"
REGION_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


def _endpoint_url(value: str) -> str:
    """An absolute http(s) URL without credentials, query or fragment."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; store them with POST /v1/secrets")
    if parts.fragment or parts.query:
        raise ValueError("must not have a query or fragment")
    if port == 0:
        raise ValueError("port must be from 1 to 65535")
    if any(c.isspace() for c in value):
        raise ValueError("must not contain whitespace")
    return value.rstrip("/")


EndpointUrl = Annotated[str, Field(min_length=8, max_length=2048), AfterValidator(_endpoint_url)]
Region = Annotated[str, Field(pattern=REGION_PATTERN)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Capabilities(Strict):
    context_length: int | None = Field(None, ge=256, le=10_000_000)
    streaming: bool = True
    tools: bool = False
    json_schema: bool = False
    embeddings: bool = False
    embedding_model: str | None = Field(None, max_length=300)


class RateLimit(Strict):
    rps: float | None = Field(None, gt=0, le=10_000)
    max_concurrency: int | None = Field(None, ge=1, le=1024)


class TargetCreate(Strict):
    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    provider: Literal["openai_compatible", "anthropic"] = "openai_compatible"
    model: str = Field(min_length=1, max_length=300)
    base_url: EndpointUrl | None = None
    endpoints: dict[Region, EndpointUrl] = Field(default_factory=dict, max_length=50)
    # Not a field any more (issue #22): queue names are the operator's, never a tenant's. Out
    # of the schema; a request that still sends it is told why rather than "extra input".
    region_queues: SkipJsonSchema[Any] = Field(None, exclude=True)
    capabilities: Capabilities = Field(default_factory=Capabilities)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    secret_id: uuid.UUID | None = None
    recertify_before_days: int = Field(7, ge=0, le=365)

    @field_validator("region_queues")
    @classmethod
    def _operator_configuration(cls, value: Any) -> None:
        raise ValueError(
            "region_queues is operator configuration, not part of a target: the "
            "deployment maps each region to its queue (CERTIFICATION_REGION_QUEUES); "
            "drop the field and name the region when you create a certification"
        )

    @model_validator(mode="after")
    def _has_endpoint(self) -> TargetCreate:
        if self.base_url is None and not self.endpoints:
            raise ValueError("give base_url or at least one entry in endpoints")
        return self


# --- PATCH /v1/targets/{id} (issue #22) ---------------------------------------------------
class TargetUpdate(Strict):
    """The fields given change (objects merge, as in JSON merge patch); the others keep their
    value. The endpoint, model and provider cannot change: a certificate speaks of one
    endpoint and model, so those need a new target. Changed capabilities supersede the
    target's certificates (their claims were made under the old declaration)."""

    name: str | None = Field(None, min_length=1, max_length=200, pattern=NAME_PATTERN)
    capabilities: Capabilities | None = Field(
        None, description="Only the capabilities given change."
    )
    rate_limit: RateLimit | None = Field(
        None, description="Only the limits given change; null lifts one."
    )
    recertify_before_days: int | None = Field(None, ge=0, le=365)

    @model_validator(mode="after")
    def _no_nulls(self) -> TargetUpdate:
        nulls = [name for name in self.model_fields_set if getattr(self, name) is None]
        if nulls:
            raise ValueError(
                f"{', '.join(sorted(nulls))} cannot be null; leave it out to keep its value"
            )
        return self


# --- end PATCH ------------------------------------------------------------------------------


class TargetView(BaseModel):
    id: uuid.UUID
    name: str
    provider: str
    model: str
    base_url: str | None
    endpoints: dict[str, str]
    capabilities: Capabilities
    rate_limit: RateLimit
    secret_id: uuid.UUID | None
    recertify_before_days: int
    created_at: datetime


class TargetList(BaseModel):
    items: list[TargetView]
    next_cursor: str | None = None


class SecretCreate(Strict):
    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    value: SecretStr = Field(
        min_length=1,
        max_length=8192,
        description="The credential; stored encrypted, never returned.",
    )


class SecretView(BaseModel):
    """Metadata only: the value is never returned."""

    id: uuid.UUID
    name: str
    created_at: datetime
    rotated_at: datetime | None


class SecretList(BaseModel):
    items: list[SecretView]
    next_cursor: str | None = None


JudgeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]


class CertificationCreate(Strict):
    target_id: uuid.UUID
    suite: str = Field(
        "smoke",
        min_length=1,
        max_length=151,
        pattern=r"^[a-z0-9][a-z0-9_-]*(@[A-Za-z0-9][A-Za-z0-9._+-]*)?$",
        description="A built-in suite or your own, as `name` (your newest version) or "
        "`name@version`.",
    )
    region: Region | None = None
    priority: Literal["high", "normal", "low"] = "normal"
    judges: dict[JudgeName, uuid.UUID] = Field(
        default_factory=dict,
        max_length=8,
        description="The judge models the suite's `judge` graders name, each bound to another "
        'target of your organization: `{"grader": TARGET_ID}` (docs/suites.md).',
    )


class SuiteRef(BaseModel):
    name: str
    version: str
    content_hash: str


class Progress(BaseModel):
    done: int
    total: int


class Timings(BaseModel):
    created_at: datetime
    dispatched_at: datetime | None = Field(
        description="When the job's message was published to the queue; null until then. The "
        "POST answers it at once; the stored value follows within about 0.1 s."
    )
    started_at: datetime | None
    finished_at: datetime | None


class JobError(BaseModel):
    cause: str
    message: str


class CheckSummary(BaseModel):
    name: str
    outcome: str
    required: bool
    passed: int
    failed: int
    errored: int
    total: int
    pass_rate: float | None
    threshold: float | None
    lower: float | None
    upper: float | None
    duration_seconds: float
    explanation: str = Field("", description="One line built from the check's evidence.")


class CertificationView(BaseModel):
    id: uuid.UUID
    target_id: uuid.UUID
    status: Literal[
        "queued", "running", "retrying", "succeeded", "failed", "timed_out", "cancelled"
    ]
    verdict: Literal["certified", "certified_with_warnings", "not_certified", "inconclusive"] | None
    score: float | None
    priority: str
    region: str | None
    queue: str
    reason: str
    suite: SuiteRef
    attempt: int
    max_attempts: int
    progress: Progress
    timings: Timings
    error: JobError | None
    valid_until: datetime | None
    checks: list[CheckSummary]
    verdict_reasons: list[str] = Field(
        default_factory=list,
        description=(
            "Why the verdict is short of certified: each deciding check with its explanation."
        ),
    )


class CertificationList(BaseModel):
    items: list[CertificationView]
    next_cursor: str | None = None


class CertificationFilter(Strict):
    status: (
        Literal["queued", "running", "retrying", "succeeded", "failed", "timed_out", "cancelled"]
        | None
    ) = None
    verdict: (
        Literal["certified", "certified_with_warnings", "not_certified", "inconclusive"] | None
    ) = None
    target_id: uuid.UUID | None = None
    since: datetime | None = None
    cursor: str | None = Field(None, max_length=200)
    limit: int = Field(50, ge=1, le=200)


class PageQuery(Strict):
    cursor: str | None = Field(None, max_length=200)
    limit: int = Field(50, ge=1, le=200)


class ProblemDetail(BaseModel):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[ProblemDetail] | None = None
    request_id: str | None = None


class ProbeView(BaseModel):
    status: str
    checks: dict[str, Any] = Field(default_factory=dict)
