"""The engine against the reference endpoint (in process, 127.0.0.1, port 0).

Verdicts come from what the endpoint did; no assertion depends on timing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.certification.checks import TargetSpec
from app.certification.engine import EngineHooks
from app.certification.providers.base import EndpointError, ErrorCause
from app.certification.providers.http import HttpPolicy
from app.certification.results import CheckOutcome, CheckResult, Verdict
from app.certification.runner import execute
from app.certification.scoring import decide_verdict
from app.certification.suites import CheckEntry, RunSpec, Suite, SuiteFile, get_suite
from tests.support.reference import running_reference

CAPABILITIES = {
    "streaming": True,
    "tools": True,
    "json_schema": True,
    "embeddings": True,
    "context_length": 8192,
    "embedding_model": "reference-embed",
}


def suite_of(*entries: dict[str, Any], max_error_rate: float = 0.2, concurrency: int = 4) -> Suite:
    definition = SuiteFile(
        name="test",
        version="0",
        max_error_rate=max_error_rate,
        run=RunSpec(concurrency=concurrency),
        checks=[CheckEntry(**e) for e in entries],
    )
    return Suite(definition, "sha256:test")


def certify(
    base_url: str,
    suite: Suite,
    provider: str = "openai_compatible",
    capabilities: dict[str, Any] | None = None,
    **kwargs: Any,
) -> list[CheckResult]:
    target = TargetSpec(
        provider,
        "reference-model",
        base_url,
        capabilities=CAPABILITIES if capabilities is None else capabilities,
    )
    return asyncio.run(execute(suite, target, None, EngineHooks(), **kwargs))


def verdict(results: list[CheckResult]) -> Verdict:
    return decide_verdict((r.outcome, r.required) for r in results)


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def test_good_endpoint_is_certified_with_every_check_passed() -> None:
    with running_reference() as (root, _):
        results = certify(f"{root}/m/good/v1", get_suite("standard"))
    assert verdict(results) is Verdict.CERTIFIED
    assert {r.name: str(r.outcome) for r in results if r.outcome is not CheckOutcome.PASSED} == {}
    latency = by_name(results)["latency"].details
    assert latency["p50_ms"] is not None and latency["p95_ms"] is not None


def test_wrong_endpoint_is_not_certified_because_qa_fails() -> None:
    with running_reference() as (root, _):
        results = certify(f"{root}/m/wrong/v1", get_suite("standard"))
    assert verdict(results) is Verdict.NOT_CERTIFIED
    qa = by_name(results)["exact_answer"]
    assert qa.outcome is CheckOutcome.FAILED and qa.passed == 0


def test_flaky_endpoint_beyond_the_error_budget_is_inconclusive() -> None:
    with running_reference() as (root, _):
        results = certify(
            f"{root}/m/flaky-60/v1",
            get_suite("standard"),
            policy=HttpPolicy(sample_retries=0, max_connections=4),
        )
    assert verdict(results) is Verdict.INCONCLUSIVE
    errored = [r for r in results if r.outcome is CheckOutcome.ERRORED]
    assert errored and all(r.details["error_causes"].get(ErrorCause.SERVER_ERROR) for r in errored)


def test_slow_endpoint_fails_a_latency_slo_below_its_latency() -> None:
    suite = suite_of(
        {"name": "connectivity", "threshold": 0.5, "params": {"repeats": 5}},
        {
            "name": "latency",
            "required": False,
            "params": {"requests": 8, "concurrency": 4, "p95_slo_ms": 200},
        },
    )
    with running_reference() as (root, _):
        results = certify(f"{root}/m/slow-400/v1", suite)
    latency = by_name(results)["latency"]
    assert latency.outcome is CheckOutcome.FAILED
    p95 = next(q for q in latency.details["quantiles"] if q["metric"] == "latency_p95_ms")
    # Eight requests bound a p95 from below only, and that bound is over the SLO already.
    assert p95["lower"] > 200 and p95["upper"] is None and p95["outcome"] == "failed"
    assert verdict(results) is Verdict.CERTIFIED_WITH_WARNINGS


@pytest.mark.parametrize(
    ("provider", "path"), [("openai_compatible", "/m/broken/v1"), ("anthropic", "/m/broken")]
)
def test_broken_stream_fails_the_streaming_check_with_a_precise_cause(
    provider: str, path: str
) -> None:
    suite = suite_of({"name": "streaming", "threshold": 0.6, "params": {"prompts": 4}})
    with running_reference() as (root, _):
        results = certify(root + path, suite, provider=provider)
    streaming = by_name(results)["streaming"]
    assert streaming.outcome is CheckOutcome.FAILED
    assert {s.error_cause for s in streaming.samples} == {ErrorCause.MALFORMED_BODY}
    assert verdict(results) is Verdict.NOT_CERTIFIED


def test_rate_limited_endpoint_is_retried_after_retry_after_and_finishes() -> None:
    suite = suite_of(
        {"name": "connectivity", "threshold": 0.5, "params": {"repeats": 5}},
        {"name": "exact_answer", "threshold": 0.8, "params": {"dataset": "qa-basic.jsonl"}},
        concurrency=8,
    )
    retries: list[EndpointError] = []
    with running_reference() as (root, server):
        results = certify(f"{root}/m/ratelimit-20/v1", suite, on_retry=retries.append)
        rejected = server.stats.by_status.get("429", 0)
    assert rejected > 0 and retries
    assert all(
        e.cause == ErrorCause.RATE_LIMITED and e.retry_after and e.retry_after >= 1 for e in retries
    )
    qa = by_name(results)["exact_answer"]
    assert qa.errored == 0 and qa.outcome is CheckOutcome.PASSED
    assert verdict(results) is Verdict.CERTIFIED


def test_anthropic_messages_api_good_endpoint_is_certified() -> None:
    capabilities = {**CAPABILITIES, "embeddings": False}
    with running_reference() as (root, _):
        results = certify(
            f"{root}/m/good", get_suite("standard"), provider="anthropic", capabilities=capabilities
        )
    assert verdict(results) is Verdict.CERTIFIED
    assert by_name(results)["embeddings"].outcome is CheckOutcome.SKIPPED
    assert by_name(results)["tool_calling"].outcome is CheckOutcome.PASSED


def test_broken_endpoint_runs_the_whole_standard_suite_to_not_certified() -> None:
    """Malformed answers are the endpoint failing, not measurement errors: every check runs,
    the streaming check fails with the precise cause, and the verdict is not_certified."""
    with running_reference() as (root, _):
        results = certify(f"{root}/m/broken/v1", get_suite("standard"))
    checks = by_name(results)
    streaming = checks["streaming"]
    assert streaming.outcome is CheckOutcome.FAILED and streaming.errored == 0
    assert streaming.details["error_causes"] == {ErrorCause.MALFORMED_BODY: streaming.total}
    assert checks["connectivity"].outcome is CheckOutcome.FAILED
    assert verdict(results) is Verdict.NOT_CERTIFIED


def test_parrot_is_never_certified_and_the_evidence_says_why() -> None:
    with running_reference() as (root, _):
        results = by_name(certify(f"{root}/m/parrot/v1", get_suite("standard")))
    for name in ("chat", "exact_answer", "streaming", "refusal", "over_refusal"):
        assert results[name].outcome is CheckOutcome.FAILED, name
        assert "repeated the prompt" in results[name].explanation, name
    chat = results["chat"]
    assert chat.explanation.startswith("0 of 10 passed")
    assert {s.finish_reason for s in chat.samples} == {"length"}


def test_a_model_the_server_does_not_list_stops_the_certification() -> None:
    with running_reference() as (root, server):
        target = TargetSpec(
            "openai_compatible", "gpt-bogus", f"{root}/m/any-model/v1", capabilities=CAPABILITIES
        )
        results = asyncio.run(execute(get_suite("standard"), target, None, EngineHooks()))
        chats = server.stats.by_scope.get("any-model", {}).get("total", 0)
    connectivity, *rest = results
    assert connectivity.outcome is CheckOutcome.FAILED
    assert connectivity.details["cause"] == ErrorCause.MODEL_NOT_LISTED
    assert {r.outcome for r in rest} == {CheckOutcome.SKIPPED}
    assert all("model_not_listed" in r.details["reason"] for r in rest)
    assert chats == 5  # the five listings; not one chat under the bogus name
    assert verdict(results) is Verdict.NOT_CERTIFIED


def test_a_declared_capability_that_is_never_served_fails() -> None:
    suite = suite_of(
        {"name": "connectivity", "threshold": 0.5, "params": {"repeats": 1}},
        {"name": "embeddings", "threshold": 0.7, "params": {"triples": 3}},
    )
    with running_reference() as (root, _):
        embeddings = by_name(certify(f"{root}/m/no-embeddings/v1", suite))["embeddings"]
    assert embeddings.outcome is CheckOutcome.FAILED and embeddings.errored == 0
    assert embeddings.details["cause"] == ErrorCause.CAPABILITY_UNAVAILABLE
    assert all(s.retries == 2 for s in embeddings.samples)  # retried, the same answer each time
    assert "capability is not served" in embeddings.explanation


def test_a_serial_server_is_named_and_its_emptied_streams_fail() -> None:
    with running_reference() as (root, _):
        results = by_name(certify(f"{root}/m/serial/v1", get_suite("standard")))
    load, streaming = results["load"], results["streaming"]
    assert load.outcome is CheckOutcome.FAILED
    assert load.explanation.startswith("serves one request at a time: throughput at 8 = ")
    assert streaming.outcome is CheckOutcome.FAILED
    assert streaming.details["error_causes"].get(ErrorCause.STREAM_EMPTY, 0) >= 1
    assert "ended after the role chunk with no content" in streaming.explanation


def test_no_suite_a_deployment_offers_certifies_a_parrot() -> None:
    """Every suite offered with the default settings (the bench-* suites are not: they
    measure the job machinery) gives a model that repeats its prompt not_certified."""
    from app.config import Settings
    from app.services.suites import builtin_list, offered

    names = [s.name for s in builtin_list(Settings())]
    assert names and not [n for n in names if n.startswith("bench-")]
    with running_reference() as (root, _):
        for name in names:
            results = certify(f"{root}/m/parrot/v1", offered(Settings(), name))
            assert verdict(results) is Verdict.NOT_CERTIFIED, name
