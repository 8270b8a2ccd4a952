"""Build the provider for a target and run a suite with one aiohttp session (the job's)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from app.certification.checks import TargetSpec
from app.certification.checks.judging import Judge
from app.certification.engine import (
    EngineHooks,
    JobFailure,
    RunConditions,
    run_conditions,
    run_suite,
)
from app.certification.providers.base import (
    JOB_SECRETS,
    EndpointError,
    ErrorCause,
    Gate,
    Provider,
    no_gate,
)
from app.certification.providers.http import HttpClient, HttpPolicy, make_session
from app.certification.providers.openai_compatible import OpenAICompatible, auth_headers
from app.certification.regressions import Baseline
from app.certification.results import CheckResult
from app.certification.suites import Suite


def build_provider(target: TargetSpec, client: HttpClient) -> Provider:
    if target.provider == "openai_compatible":
        return OpenAICompatible(client, target.base_url, target.model)
    if target.provider == "anthropic":
        from app.certification.providers.anthropic import Anthropic, anthropic_headers

        client.headers = anthropic_headers(client.headers.get("Authorization", "")[7:] or None)
        return Anthropic(client, target.base_url, target.model)
    raise JobFailure(
        ErrorCause.INVALID_TARGET, f"unknown provider {target.provider!r}", retryable=False
    )


@dataclass(frozen=True)
class JudgeEndpoint:
    """A judge model bound to a suite's logical judge name: another endpoint, called through
    its own provider adapter on the job's session (the same SSRF guard, timeouts and sample
    retries), with its own key, gate and concurrency limit (its max_concurrency, else the
    suite's concurrency)."""

    spec: TargetSpec
    api_key: str | None = None
    gate: Gate = no_gate
    on_response: Callable[[str, float], None] | None = None


def http_policy(conditions: RunConditions) -> HttpPolicy:
    """Timeouts and sample retries from the suite; as many connections as the busiest check."""
    return HttpPolicy(
        connect_timeout=conditions.connect_timeout_seconds,
        read_timeout=conditions.request_timeout_seconds,
        total_timeout=conditions.request_timeout_seconds,
        sample_retries=conditions.sample_retries,
        max_connections=conditions.max_connections,
    )


async def execute(
    suite: Suite,
    target: TargetSpec,
    api_key: str | None,
    hooks: EngineHooks,
    *,
    policy: HttpPolicy | None = None,
    conditions: RunConditions | None = None,
    gate: Gate = no_gate,
    resolver: aiohttp.abc.AbstractResolver | None = None,
    socket_factory: Callable[[Any], Any] | None = None,
    on_response: Callable[[str, float], None] | None = None,
    on_retry: Callable[[EndpointError], None] | None = None,
    judges: Mapping[str, JudgeEndpoint] | None = None,
    baseline: Baseline | None = None,
) -> list[CheckResult]:
    conditions = conditions or run_conditions(suite, target)
    policy = policy or http_policy(conditions)
    judges = dict(judges or {})
    keys = (api_key, *(j.api_key for j in judges.values()))
    secrets = JOB_SECRETS.set(tuple(k for k in keys if k))  # every key redacted alike
    try:
        async with make_session(policy, resolver, socket_factory) as session:
            client = HttpClient(session, auth_headers(api_key), policy, gate, on_response, on_retry)
            provider = build_provider(target, client)
            bound = {
                name: bind_judge(name, judge, session, policy, conditions, on_retry)
                for name, judge in judges.items()
            }
            return await run_suite(suite, target, provider, hooks, conditions, bound, baseline)
    finally:
        JOB_SECRETS.reset(secrets)
        for held in (gate, *(j.gate for j in judges.values())):
            aclose = getattr(held, "aclose", None)  # a gate may hold connections of its own
            if aclose is not None:
                await aclose()


def bind_judge(
    name: str,
    judge: JudgeEndpoint,
    session: aiohttp.ClientSession,
    policy: HttpPolicy,
    conditions: RunConditions,
    on_retry: Callable[[EndpointError], None] | None,
) -> Judge:
    client = HttpClient(
        session, auth_headers(judge.api_key), policy, judge.gate, judge.on_response, on_retry
    )
    limit = judge.spec.max_concurrency or conditions.concurrency
    record = {"provider": judge.spec.provider, "model": judge.spec.model}
    return Judge(name, build_provider(judge.spec, client), asyncio.Semaphore(limit), record)
