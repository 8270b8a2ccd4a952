"""What a check may ask of an endpoint, and the precise ways a request can fail."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# The credential of the job under way (runner.execute sets it for the job's context): every
# text taken from a response is scrubbed of it *before* it is cut to an excerpt, so a cut
# never leaves a fragment the redaction downstream could not recognise.
JOB_SECRETS: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "job_secrets", default=()
)


def scrub(text: str) -> str:
    """`text` with the job's credential redacted in every spelling (app.redaction)."""
    secrets = JOB_SECRETS.get()
    if not secrets:
        return text
    from app.redaction import redact

    return redact(text, secrets) or ""


class ErrorCause:
    """Stable error causes shown in evidence and in `error.cause`."""

    CONNECT_ERROR = "connect_error"
    TIMEOUT = "timeout"
    HTTP_STATUS = "http_status"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    AUTH_FAILED = "auth_failed"
    NOT_FOUND = "not_found"
    MALFORMED_BODY = "malformed_body"
    STREAM_INCOMPLETE = "stream_incomplete"
    BLOCKED_ADDRESS = "blocked_address"
    INVALID_TARGET = "invalid_target"
    CANCELLED = "cancelled"
    # Graded outcomes with a cause of their own (the endpoint answered, but not as it must):
    STREAM_EMPTY = "stream_empty"  # a stream that ended without any content
    CAPABILITY_UNAVAILABLE = "capability_unavailable"  # a declared capability never served
    MODEL_NOT_LISTED = "model_not_listed"  # the endpoint does not list the model asked for
    MODEL_MISMATCH = "model_mismatch"  # the reply names another model than the one asked


RETRYABLE_CAUSES = frozenset(
    {ErrorCause.CONNECT_ERROR, ErrorCause.TIMEOUT, ErrorCause.RATE_LIMITED, ErrorCause.SERVER_ERROR}
)


class EndpointError(Exception):
    """A request to the endpoint failed; `cause` is one of ErrorCause."""

    def __init__(
        self,
        cause: str,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        latency_ms: float | None = None,
    ) -> None:
        super().__init__(message)
        self.cause = cause
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after
        self.latency_ms = latency_ms

    @property
    def retryable(self) -> bool:
        return self.cause in RETRYABLE_CAUSES


@dataclass(frozen=True)
class ChatResult:
    text: str
    status_code: int
    latency_ms: float
    ttft_ms: float | None = None
    finish_reason: str | None = None  # as the endpoint said it ("length": cut by max_tokens)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    chunks: int = 0  # stream events read
    done_marker: bool = False
    raw_model: str | None = None  # the model the endpoint says it served
    usage: dict[str, int] | None = None  # prompt_tokens / completion_tokens, when reported
    content_chunks: int = 0  # stream events that carried content (text or a tool call)


def model_list(data: Any, status: int, latency_ms: float) -> ModelList:
    """A model listing (`{"data": [{"id": …}, …]}`, OpenAI's and Anthropic's alike)."""
    try:
        models = [str(item["id"]) for item in data["data"]]
    except (KeyError, TypeError) as exc:
        raise EndpointError(
            ErrorCause.MALFORMED_BODY,
            f"model list lacks data[].id ({exc!s})",
            status_code=status,
            latency_ms=latency_ms,
        ) from None
    return ModelList(models=models, status_code=status, latency_ms=latency_ms)


def served_model(data: Any) -> str | None:
    """The `model` a response names: what the endpoint says it served."""
    model = data.get("model") if isinstance(data, dict) else None
    return model[:200] if isinstance(model, str) and model else None


def parse_usage(
    value: Any, prompt_key: str = "prompt_tokens", completion_key: str = "completion_tokens"
) -> dict[str, int] | None:
    """Token counts as the endpoint reported them, under OpenAI's names; None when absent."""
    if not isinstance(value, dict):
        return None
    usage = {}
    for ours, theirs in (("prompt_tokens", prompt_key), ("completion_tokens", completion_key)):
        count = value.get(theirs)
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            usage[ours] = count
    return usage or None


@dataclass(frozen=True)
class ModelList:
    models: list[str]
    status_code: int
    latency_ms: float


@dataclass(frozen=True)
class EmbeddingResult:
    vectors: list[list[float]]
    status_code: int
    latency_ms: float


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, Any]]
    max_tokens: int = 64
    temperature: float = 0.0
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None
    seed: int | None = None


class Provider(Protocol):
    """A model endpoint as the checks see it."""

    name: str
    model: str

    async def list_models(self) -> ModelList: ...

    async def chat(self, request: ChatRequest) -> ChatResult: ...

    async def embed(self, texts: list[str], model: str | None = None) -> EmbeddingResult: ...


# Awaited before every request; may return a slot with `async release()` (held until done).
Gate = Callable[[], Awaitable[Any]]


async def no_gate() -> None:
    """A gate that never waits (no shared rate limit)."""
    await asyncio.sleep(0)
