"""Checks graded against small fake providers (pure: no network)."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from tenacity import RetryCallState

from app.certification.checks import CheckContext, TargetSpec
from app.certification.checks.catalog import REGISTRY
from app.certification.checks.latency import percentile
from app.certification.checks.safety import is_refusal
from app.certification.providers.base import (
    ChatRequest,
    ChatResult,
    EmbeddingResult,
    EndpointError,
    ErrorCause,
    ModelList,
)
from app.certification.providers.http import HttpPolicy, _wait_honouring_retry_after
from app.certification.results import Grade, Sample


class FakeProvider:
    name = "fake"
    model = "m"

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.requests: list[ChatRequest] = []

    async def list_models(self) -> ModelList:
        return ModelList(["m"], 200, 1.0)

    async def chat(self, request: ChatRequest) -> ChatResult:
        self.requests.append(request)
        return self.reply(request)

    async def embed(self, texts: list[str], model: str | None = None) -> EmbeddingResult:
        return EmbeddingResult([[1.0, 0.0]] * len(texts), 200, 1.0)


def run(name: str, provider: FakeProvider, **params: Any) -> list[Sample]:
    ctx = CheckContext(provider=provider, target=TargetSpec("fake", "m", "http://x",
                                                            capabilities={"context_length": 1000}))
    return asyncio.run(REGISTRY[name].factory(**params)(ctx))


def text(value: str, latency: float = 5.0) -> ChatResult:
    return ChatResult(text=value, status_code=200, latency_ms=latency)


def test_streaming_malformed_chunk_is_a_failure_with_its_cause() -> None:
    def reply(_: ChatRequest) -> ChatResult:
        raise EndpointError(ErrorCause.MALFORMED_BODY, "chunk 2 is malformed", status_code=200)

    samples = run("streaming", FakeProvider(reply), prompts=3)
    assert {s.grade for s in samples} == {Grade.FAIL}
    assert {s.error_cause for s in samples} == {ErrorCause.MALFORMED_BODY}


def test_streaming_server_error_stays_an_error() -> None:
    def reply(_: ChatRequest) -> ChatResult:
        raise EndpointError(ErrorCause.SERVER_ERROR, "HTTP 500", status_code=500)

    assert {s.grade for s in run("streaming", FakeProvider(reply), prompts=2)} == {Grade.ERROR}


def test_latency_grades_each_sample_against_the_slo_and_reports_percentiles() -> None:
    latencies = itertools.cycle([10.0, 20.0, 30.0, 400.0])
    samples = run("latency", FakeProvider(lambda _: text("ok", next(latencies))),
                  requests=8, concurrency=1, p95_slo_ms=100)
    assert [s.grade for s in samples].count(Grade.FAIL) == 2
    assert samples.details["p95_ms"] == 400.0  # type: ignore[attr-defined]
    assert samples.details["p50_ms"] == 20.0  # type: ignore[attr-defined]


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0
    assert percentile(list(map(float, range(1, 101))), 95) == 95.0


def test_determinism_fails_replies_that_differ_from_the_most_common() -> None:
    counter = itertools.count()
    replies = lambda _: text("A" if next(counter) % 5 else "B")  # noqa: E731
    samples = run("determinism", FakeProvider(replies), prompts=1, repeats=5)
    assert sorted(s.grade for s in samples) == [Grade.FAIL] + [Grade.PASS] * 4


def test_json_schema_validates_the_reply() -> None:
    good = {"name": "Lisbon", "country": "Portugal", "population": 545000}
    assert run("json_schema", FakeProvider(lambda _: text(json.dumps(good))),
               prompts=1)[0].grade is Grade.PASS
    bad = run("json_schema", FakeProvider(lambda _: text('{"name": 3}')), prompts=1)[0]
    assert bad.grade is Grade.FAIL and bad.detail["schema_errors"]


def test_tool_calling_needs_the_declared_function_with_valid_arguments() -> None:
    def call(name: str, args: str) -> ChatResult:
        return ChatResult(text="", status_code=200, latency_ms=1.0, tool_calls=[
            {"type": "function", "function": {"name": name, "arguments": args}}])

    assert run("tool_calling", FakeProvider(lambda _: call("get_weather", '{"city": "Oslo"}')),
               prompts=1)[0].grade is Grade.PASS
    for reply in (call("get_weather", "{city"), call("other", "{}"), text("sunny")):
        assert run("tool_calling", FakeProvider(lambda _, r=reply: r),
                   prompts=1)[0].grade is Grade.FAIL


def test_exact_answer_uses_the_shipped_dataset() -> None:
    samples = run("exact_answer", FakeProvider(lambda _: text("Paris")), limit=20)
    passed = [s.prompt_id for s in samples if s.grade is Grade.PASS]
    assert passed == ["qa-016"]  # the capital of France


def test_needle_prompt_fills_the_declared_context() -> None:
    provider = FakeProvider(lambda _: text("no idea"))
    samples = run("context_needle", provider, samples=2)
    assert all(s.grade is Grade.FAIL for s in samples)
    size = len(provider.requests[0].messages[0]["content"])
    assert 3000 <= size <= 3400  # 1000 tokens * 0.8 * 4 chars, plus the question


def test_refusal_patterns() -> None:
    assert is_refusal("I'm sorry, but I can't help with that.")
    assert is_refusal("I cannot assist with this request.")
    assert not is_refusal("Use `kill -9 <pid>` to kill the process.")
    assert not is_refusal("Sure! Here is how to carve a turkey.")


def test_wait_honours_retry_after() -> None:
    wait = _wait_honouring_retry_after(HttpPolicy(backoff_base=0.01, backoff_max=0.05))
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.set_exception((EndpointError, EndpointError(ErrorCause.RATE_LIMITED, "429",
                                                      retry_after=3.0), None))
    assert wait(state) >= 3.0
