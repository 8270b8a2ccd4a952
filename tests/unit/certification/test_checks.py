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
    EndpointError,
    ErrorCause,
)
from app.certification.providers.http import HttpPolicy, _wait_honouring_retry_after
from app.certification.results import Grade, Sample
from tests.support.providers import FakeProvider


def run(name: str, provider: FakeProvider, **params: Any) -> list[Sample]:
    ctx = CheckContext(
        provider=provider,
        target=TargetSpec("fake", "m", "http://x", capabilities={"context_length": 1000}),
    )
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


def test_latency_decides_by_quantile_bounds_not_per_sample_grades() -> None:
    latencies = itertools.cycle([10.0, 20.0, 30.0, 400.0])
    samples = run(
        "latency",
        FakeProvider(lambda _: text("ok", next(latencies))),
        requests=80,
        concurrency=1,
        p95_slo_ms=100,
    )
    assert [s.grade for s in samples].count(Grade.FAIL) == 20  # within-SLO evidence only
    assert samples.details["p95_ms"] == 400.0  # type: ignore[attr-defined]
    assert samples.details["p50_ms"] == 20.0  # type: ignore[attr-defined]
    decided = samples.decided  # type: ignore[attr-defined]
    assert decided.outcome.value == "failed"  # a quarter of requests take 400 ms: p95 > 100
    assert decided.lower == 400.0 and decided.threshold == 100


def test_latency_too_few_requests_for_a_p95_bound_is_inconclusive() -> None:
    samples = run(
        "latency",
        FakeProvider(lambda _: text("ok", 5.0)),
        requests=24,
        concurrency=1,
        p95_slo_ms=100,
    )
    assert all(s.grade is Grade.PASS for s in samples)  # each under the SLO ...
    decided = samples.decided  # type: ignore[attr-defined]
    assert decided.upper is None  # ... but 24 requests cannot bound a p95 from above
    assert decided.outcome.value == "inconclusive"


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0
    assert percentile(list(map(float, range(1, 101))), 95) == 95.0


def test_determinism_fails_replies_that_differ_from_the_most_common() -> None:
    counter = itertools.count()
    replies = lambda _: text("A" if next(counter) % 5 else "B")  # noqa: E731
    samples = run("determinism", FakeProvider(replies), prompts=1, repeats=5)
    assert sorted(s.grade for s in samples) == [Grade.FAIL] + [Grade.PASS] * 4


def test_json_schema_needs_valid_json_holding_the_asked_values() -> None:
    good = {"name": "Ada Lovelace", "birth_year": 1815, "city": "London"}
    assert (
        run("json_schema", FakeProvider(lambda _: text(json.dumps(good))), prompts=1)[0].grade
        is Grade.PASS
    )
    placeholders = {"name": "example", "birth_year": 1, "city": "example"}
    wrong = run("json_schema", FakeProvider(lambda _: text(json.dumps(placeholders))), prompts=1)[0]
    assert wrong.grade is Grade.FAIL and wrong.detail["reason"] == "wrong_values"
    assert sorted(wrong.detail["wrong_fields"]) == ["birth_year", "city", "name"]
    bad = run("json_schema", FakeProvider(lambda _: text('{"name": 3}')), prompts=1)[0]
    assert bad.grade is Grade.FAIL and bad.detail["schema_errors"]


def test_tool_calling_needs_the_declared_function_with_the_asked_arguments() -> None:
    def call(name: str, args: str) -> ChatResult:
        return ChatResult(
            text="",
            status_code=200,
            latency_ms=1.0,
            tool_calls=[{"type": "function", "function": {"name": name, "arguments": args}}],
        )

    assert (
        run(
            "tool_calling",
            FakeProvider(lambda _: call("get_weather", '{"city": "Oslo"}')),
            prompts=1,
        )[0].grade
        is Grade.PASS
    )
    wrong = run(
        "tool_calling", FakeProvider(lambda _: call("get_weather", '{"city": "Rome"}')), prompts=1
    )[0]
    assert wrong.grade is Grade.FAIL and wrong.detail["reason"] == "wrong_arguments"
    for reply in (call("get_weather", "{city"), call("other", "{}"), text("sunny")):
        assert (
            run("tool_calling", FakeProvider(lambda _, r=reply: r), prompts=1)[0].grade
            is Grade.FAIL
        )


def test_exact_answer_uses_the_shipped_dataset() -> None:
    samples = run("exact_answer", FakeProvider(lambda _: text("Paris")), limit=20)
    passed = [s.prompt_id for s in samples if s.grade is Grade.PASS]
    assert passed == ["qa-016"]  # the capital of France


def test_needle_passes_the_code_alone_or_as_the_needle_sentence_not_an_echo() -> None:
    from app.certification.checks.context_needle import is_code

    assert is_code("MC-ABC234", "MC-ABC234") and is_code("`MC-ABC234`.", "MC-ABC234")
    assert is_code("The secret code is MC-ABC234.", "MC-ABC234")
    assert not is_code("Filler text. The secret code is MC-ABC234. More filler", "MC-ABC234")
    echo = FakeProvider(lambda r: text(r.messages[0]["content"][:400]))
    assert all(s.grade is Grade.FAIL for s in run("context_needle", echo, samples=2))


def test_needle_prompt_fills_the_declared_context() -> None:
    provider = FakeProvider(lambda _: text("no idea"))
    samples = run("context_needle", provider, samples=2)
    assert all(s.grade is Grade.FAIL for s in samples)
    size = len(provider.requests[0].messages[0]["content"])
    assert 3000 <= size <= 3400  # 1000 tokens * 0.8 * 4 chars, plus the question


def echo(request: ChatRequest) -> ChatResult:
    """A base model that repeats its prompt and rambles on, as real small models do."""
    return ChatResult(
        text=request.messages[-1]["content"] + " mendatang the the",
        status_code=200,
        latency_ms=5.0,
        finish_reason="length",
    )


def test_no_check_passes_a_reply_that_repeats_the_prompt() -> None:
    for name, params in (
        ("chat", {"prompts": 4}),
        ("streaming", {"prompts": 4}),
        ("exact_answer", {"limit": 8}),
        ("json_schema", {"prompts": 4}),
        ("tool_calling", {"prompts": 3}),
        ("determinism", {"prompts": 2}),
        ("refusal", {"limit": 8}),
        ("over_refusal", {"limit": 8}),
    ):
        samples = run(name, FakeProvider(echo), **params)
        assert samples and all(s.grade is Grade.FAIL for s in samples), name
    chat = run("chat", FakeProvider(echo), prompts=2)
    assert {s.detail["reason"] for s in chat} == {"echoed_prompt"}
    assert {s.finish_reason for s in chat} == {"length"}


def test_chat_grades_the_whole_reply_not_containment() -> None:
    def reply(token_reply):  # type: ignore[no-untyped-def]
        def answer(request: ChatRequest) -> ChatResult:
            token = request.messages[0]["content"].rsplit(": ", 1)[1]
            return text(token_reply(token))

        return FakeProvider(answer)

    assert run("chat", reply(lambda t: t), prompts=2)[0].grade is Grade.PASS
    assert run("chat", reply(lambda t: f" `{t}`. "), prompts=2)[0].grade is Grade.PASS
    sure = run("chat", reply(lambda t: f"Sure! {t}"), prompts=2)[0]
    assert sure.grade is Grade.FAIL and sure.detail["reason"] == "wrong_answer"


def test_a_stream_with_no_content_fails_with_its_own_cause() -> None:
    def emptied(_: ChatRequest) -> ChatResult:
        return ChatResult(text="", status_code=200, latency_ms=2.0, chunks=1, done_marker=True)

    samples = run("streaming", FakeProvider(emptied), prompts=2)
    assert {(s.grade, s.error_cause) for s in samples} == {(Grade.FAIL, "stream_empty")}


def test_over_refusal_needs_an_answer_not_merely_no_refusal() -> None:
    from app.certification.checks.datasets import load_jsonl

    pairs = {p["benign"]: p for p in load_jsonl("safety-pairs.jsonl")}
    answered = FakeProvider(
        lambda r: text(pairs[r.messages[0]["content"]]["benign_reference_answer"])
    )
    assert all(s.grade is Grade.PASS for s in run("over_refusal", answered, limit=10))
    vague = run("over_refusal", FakeProvider(lambda _: text("That is a good question.")), limit=4)
    assert {(s.grade, s.detail["reason"]) for s in vague} == {(Grade.FAIL, "not_answered")}
    refused = run("over_refusal", FakeProvider(lambda _: text("I'm sorry, but I can't.")), limit=4)
    assert {s.detail["reason"] for s in refused} == {"refused"}


def test_refusal_passes_refusals_only() -> None:
    refused = run("refusal", FakeProvider(lambda _: text("I can't help with that.")), limit=6)
    assert all(s.grade is Grade.PASS for s in refused)
    complied = run("refusal", FakeProvider(lambda _: text("Sure, here is how.")), limit=6)
    assert {s.detail["reason"] for s in complied} == {"not_refused"}


def test_a_reply_naming_another_model_is_recorded() -> None:
    other = FakeProvider(
        lambda _: ChatResult(
            text="apple-1", status_code=200, latency_ms=1.0, raw_model="some-other-model"
        )
    )
    sample = run("chat", other, prompts=1)[0]
    assert sample.served_model == "some-other-model" and sample.detail["model_mismatch"]
    connectivity = run("connectivity", other, repeats=2)  # the first sample probes a chat
    assert [(s.grade, s.error_cause) for s in sorted(connectivity, key=lambda s: s.index)] == [
        (Grade.FAIL, "model_mismatch"),
        (Grade.PASS, None),
    ]
    assert connectivity.details["model_mismatches"] == 1  # type: ignore[attr-defined]


def test_refusal_patterns() -> None:
    assert is_refusal("I'm sorry, but I can't help with that.")
    assert is_refusal("I cannot assist with this request.")
    assert not is_refusal("Use `kill -9 <pid>` to kill the process.")
    assert not is_refusal("Sure! Here is how to carve a turkey.")


def test_wait_honours_retry_after() -> None:
    wait = _wait_honouring_retry_after(HttpPolicy(backoff_base=0.01, backoff_max=0.05))
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.set_exception(
        (EndpointError, EndpointError(ErrorCause.RATE_LIMITED, "429", retry_after=3.0), None)
    )
    assert wait(state) >= 3.0
