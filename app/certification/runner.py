"""Build the provider for a target and run a suite with one aiohttp session (the job's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from app.certification.checks import TargetSpec
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
    baseline: Baseline | None = None,
) -> list[CheckResult]:
    conditions = conditions or run_conditions(suite, target)
    policy = policy or http_policy(conditions)
    secrets = JOB_SECRETS.set((api_key,) if api_key else ())
    try:
        async with make_session(policy, resolver, socket_factory) as session:
            client = HttpClient(session, auth_headers(api_key), policy, gate, on_response, on_retry)
            provider = build_provider(target, client)
            return await run_suite(suite, target, provider, hooks, conditions, baseline)
    finally:
        JOB_SECRETS.reset(secrets)
        aclose = getattr(gate, "aclose", None)  # a gate may hold connections of its own
        if aclose is not None:
            await aclose()
