"""What a check may ask of an endpoint, and the precise ways a request can fail."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


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
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    chunks: int = 0
    done_marker: bool = False
    raw_model: str | None = None


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
