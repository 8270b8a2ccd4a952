"""The aiohttp plumbing every adapter shares: one session per job, timeouts, no redirects,
precise error causes, and sample-level retries with full jitter that honour Retry-After."""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from app.certification.providers.base import (
    ChatResult,
    EndpointError,
    ErrorCause,
    Gate,
    no_gate,
    scrub,
)

T = TypeVar("T")
MAX_RETRY_AFTER = 60.0
# Retries of the request(s) of the sample under way: each sample runs in its own task
# (checks.run_samples), which sets a fresh counter, so the count is the sample's alone.
SAMPLE_RETRIES: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "sample_retries", default=None
)


@dataclass(frozen=True)
class HttpPolicy:
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    total_timeout: float | None = None  # one request, body (or stream) included
    max_connections: int = 16
    sample_retries: int = 2
    backoff_base: float = 0.5
    backoff_max: float = 20.0


def make_session(
    policy: HttpPolicy,
    resolver: aiohttp.abc.AbstractResolver | None = None,
    socket_factory: Callable[[Any], Any] | None = None,
) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=policy.max_connections,
        limit_per_host=policy.max_connections,
        resolver=resolver,
        ttl_dns_cache=60,
        socket_factory=socket_factory,
    )
    timeout = aiohttp.ClientTimeout(
        total=policy.total_timeout,
        sock_connect=policy.connect_timeout,
        sock_read=policy.read_timeout,
    )
    return aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(value)))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return None
        return min(MAX_RETRY_AFTER, max(0.0, when - time.time()))


def error_for_status(
    status: int, body: str, retry_after: float | None, latency_ms: float
) -> EndpointError:
    excerpt = scrub(body)[:200]
    if status == 429:
        cause = ErrorCause.RATE_LIMITED
    elif status >= 500:
        cause = ErrorCause.SERVER_ERROR
    elif status in (401, 403):
        cause = ErrorCause.AUTH_FAILED
    elif status == 404:
        cause = ErrorCause.NOT_FOUND
    else:
        cause = ErrorCause.HTTP_STATUS
    return EndpointError(
        cause,
        f"HTTP {status}: {excerpt}",
        status_code=status,
        retry_after=retry_after,
        latency_ms=latency_ms,
    )


def translate_client_error(exc: BaseException, latency_ms: float) -> EndpointError:
    if isinstance(exc, EndpointError):
        return exc
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return EndpointError(
            ErrorCause.TIMEOUT, scrub(f"timed out: {exc!s}")[:300], latency_ms=latency_ms
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = getattr(exc, "os_error", None)
        if isinstance(os_error, BlockedAddressError):
            return EndpointError(ErrorCause.BLOCKED_ADDRESS, str(os_error), latency_ms=latency_ms)
        return EndpointError(
            ErrorCause.CONNECT_ERROR, scrub(f"cannot connect: {exc!s}")[:300], latency_ms=latency_ms
        )
    if isinstance(exc, BlockedAddressError):
        return EndpointError(ErrorCause.BLOCKED_ADDRESS, str(exc), latency_ms=latency_ms)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        return EndpointError(
            ErrorCause.STREAM_INCOMPLETE,
            scrub(f"connection cut: {exc!s}")[:300],
            latency_ms=latency_ms,
        )
    if isinstance(exc, aiohttp.ClientError):
        return EndpointError(
            ErrorCause.CONNECT_ERROR, scrub(f"client error: {exc!s}")[:300], latency_ms=latency_ms
        )
    raise exc


class BlockedAddressError(OSError):
    """The endpoint resolved to an address the SSRF guard refuses."""


def _wait_honouring_retry_after(policy: HttpPolicy) -> Callable[[RetryCallState], float]:
    jitter = wait_random_exponential(multiplier=policy.backoff_base, max=policy.backoff_max)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        delay = jitter(state)
        if isinstance(exc, EndpointError) and exc.retry_after is not None:
            return max(delay, exc.retry_after)
        return delay

    return wait


async def with_retries(
    policy: HttpPolicy,
    call: Callable[[], Awaitable[T]],
    on_retry: Callable[[EndpointError], None] | None = None,
) -> T:
    """Retry retryable endpoint errors with full jitter, honouring Retry-After.

    The first attempt runs outside tenacity (most requests succeed: no retry machinery per
    request); after a retryable failure tenacity takes over, replaying that failure as its
    attempt 1, so the schedule, the callbacks and the stop are exactly tenacity's."""
    try:
        return await call()
    except EndpointError as exc:
        if not exc.retryable:
            raise
        first: EndpointError | None = exc

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        counter = SAMPLE_RETRIES.get()
        if counter is not None:
            counter[0] += 1
        if on_retry is not None and isinstance(exc, EndpointError):
            on_retry(exc)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.sample_retries + 1),
        wait=_wait_honouring_retry_after(policy),
        retry=retry_if_exception(lambda e: isinstance(e, EndpointError) and e.retryable),
        before_sleep=before_sleep,
        reraise=True,
    )

    async def attempt() -> T:
        # tenacity only awaits coroutine functions; a lambda returning a coroutine is not one.
        nonlocal first
        if first is not None:
            replayed, first = first, None
            raise replayed
        return await call()

    return await retrying(attempt)


async def release_slot(slot: object) -> None:
    """A gate may return a held slot (shared concurrency limit); give it back."""
    release = getattr(slot, "release", None)
    if release is not None:
        await release()


class HttpClient:
    """JSON and SSE over one aiohttp session, with a gate before every request."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        headers: dict[str, str],
        policy: HttpPolicy,
        gate: Gate = no_gate,
        on_response: Callable[[str, float], None] | None = None,
        on_retry: Callable[[EndpointError], None] | None = None,
    ) -> None:
        self.session = session
        self.headers = headers
        self.policy = policy
        self.gate = gate
        self.on_response = on_response
        self.on_retry = on_retry

    def _record(self, outcome: str, started: float) -> None:
        if self.on_response is not None:
            self.on_response(outcome, time.perf_counter() - started)

    async def request_json(
        self, method: str, url: str, payload: dict[str, Any] | None = None
    ) -> tuple[Any, int, float]:
        async def once() -> tuple[Any, int, float]:
            started = time.perf_counter()
            try:
                async with self.session.request(
                    method, url, json=payload, headers=self.headers, allow_redirects=False
                ) as response:
                    body = await response.text(errors="replace")
                    latency_ms = (time.perf_counter() - started) * 1000
                    if response.status != 200:
                        retry_after = parse_retry_after(response.headers.get("Retry-After"))
                        raise error_for_status(response.status, body, retry_after, latency_ms)
                    try:
                        data = json.loads(body)
                    except ValueError:
                        raise EndpointError(
                            ErrorCause.MALFORMED_BODY,
                            f"response is not JSON: {scrub(body)[:120]!r}",
                            status_code=response.status,
                            latency_ms=latency_ms,
                        ) from None
                    self._record("ok", started)
                    return data, response.status, latency_ms
            except EndpointError as exc:
                self._record(exc.cause, started)
                raise
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                error = translate_client_error(exc, (time.perf_counter() - started) * 1000)
                self._record(error.cause, started)
                raise error from None

        async def gated() -> tuple[Any, int, float]:
            slot = await self.gate()
            try:
                return await once()
            finally:
                await release_slot(slot)

        return await with_retries(self.policy, gated, self.on_retry)

    @asynccontextmanager
    async def stream_sse(
        self, url: str, payload: dict[str, Any]
    ) -> AsyncIterator[tuple[AsyncIterator[str], int, float]]:
        """Open an SSE response; yields (iterator over `data:` payloads, status, start time)."""
        slot = await self.gate()
        try:
            async with self._stream_sse(url, payload) as opened:
                yield opened
        finally:
            await release_slot(slot)

    @asynccontextmanager
    async def _stream_sse(
        self, url: str, payload: dict[str, Any]
    ) -> AsyncIterator[tuple[AsyncIterator[str], int, float]]:
        started = time.perf_counter()
        try:
            async with self.session.post(
                url, json=payload, headers=self.headers, allow_redirects=False
            ) as response:
                if response.status != 200:
                    body = await response.text(errors="replace")
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    raise error_for_status(
                        response.status, body, retry_after, (time.perf_counter() - started) * 1000
                    )

                async def events() -> AsyncIterator[str]:
                    async for raw in response.content:
                        line = raw.decode("utf-8", errors="replace").strip()
                        if line.startswith("data:"):
                            yield line[5:].strip()

                yield events(), response.status, started
                self._record("ok", started)
        except EndpointError as exc:
            self._record(exc.cause, started)
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            error = translate_client_error(exc, (time.perf_counter() - started) * 1000)
            self._record(error.cause, started)
            raise error from None


class StreamReply:
    """What a streamed reply adds up to, event by event, whatever the provider's protocol:
    its text, its events and those that carried content, the time to its first token, the
    model and usage it reported, how it finished and whether its completion marker came."""

    def __init__(self, status: int, started: float) -> None:
        self.status, self.started = status, started
        self.parts: list[str] = []
        self.events = self.content_events = 0
        self.ttft_ms: float | None = None
        self.finish_reason: str | None = None
        self.model: str | None = None
        self.usage: dict[str, int] = {}
        self.done = False

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def malformed(self, data: str, what: str = "chunk") -> EndpointError:
        return EndpointError(
            ErrorCause.MALFORMED_BODY,
            f"stream {what} {self.events + 1} is malformed: {scrub(data)[:80]!r}",
            status_code=self.status,
            latency_ms=self.elapsed_ms(),
        )

    def add(self, text: str | None, other_content: bool = False) -> None:
        """One more event; `text` its text, `other_content` whether it carried some other
        content (a tool call's arguments)."""
        self.events += 1
        if text or other_content:
            self.content_events += 1
        if text:
            if self.ttft_ms is None:
                self.ttft_ms = self.elapsed_ms()
            self.parts.append(text)

    def result(self, marker: str) -> ChatResult:
        """The reply; a stream cut before its completion `marker` is incomplete."""
        latency = self.elapsed_ms()
        if not self.done:
            raise EndpointError(
                ErrorCause.STREAM_INCOMPLETE,
                f"stream ended after {self.events} events without {marker}",
                status_code=self.status,
                latency_ms=latency,
            )
        return ChatResult(
            text="".join(self.parts),
            status_code=self.status,
            latency_ms=latency,
            ttft_ms=self.ttft_ms,
            finish_reason=self.finish_reason,
            chunks=self.events,
            done_marker=True,
            raw_model=self.model,
            usage=self.usage or None,
            content_chunks=self.content_events,
        )
