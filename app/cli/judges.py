"""`modelcert certify --judge NAME=BASE_URL …`: the judge models a suite's `judge` graders
name, bound to endpoints on the command line (the API binds them to targets)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from urllib.parse import urlsplit

import click

from app.certification.checks import TargetSpec
from app.certification.checks.dataset import judges_named
from app.certification.runner import JudgeEndpoint
from app.certification.suites import Suite

PROVIDERS = ("openai_compatible", "anthropic")


def _pairs(values: Sequence[str], option: str) -> dict[str, str]:
    """NAME=VALUE options → {NAME: VALUE}; a name given twice is an error."""
    found: dict[str, str] = {}
    for text in values:
        name, sep, value = text.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise click.BadParameter(f"{text!r} is not NAME=VALUE", param_hint=option)
        if name in found:
            raise click.BadParameter(f"judge {name!r} is given twice", param_hint=option)
        found[name] = value
    return found


def judge_endpoints(
    suite: Suite,
    urls: Sequence[str],
    models: Sequence[str],
    providers: Sequence[str],
    key_envs: Sequence[str],
    concurrencies: Sequence[str],
) -> dict[str, JudgeEndpoint]:
    """Every judge the suite names, bound to its endpoint; click.BadParameter for a judge
    left unbound, one the suite does not name, or an option naming no bound judge."""
    bound = _pairs(urls, "--judge")
    needed = judges_named(suite.definition.checks)
    for name, checks in needed.items():
        if name not in bound:
            raise click.BadParameter(
                f"check {checks[0]!r} is graded by judge {name!r}: bind it with --judge "
                f"{name}=BASE_URL --judge-model {name}=MODEL",
                param_hint="--judge",
            )
    extra = sorted(set(bound) - set(needed))
    if extra:
        raise click.BadParameter(
            f"the suite names no judge {extra[0]!r} (it names: {', '.join(needed) or 'none'})",
            param_hint="--judge",
        )
    options = {
        "--judge-model": _pairs(models, "--judge-model"),
        "--judge-provider": _pairs(providers, "--judge-provider"),
        "--judge-api-key-env": _pairs(key_envs, "--judge-api-key-env"),
        "--judge-max-concurrency": _pairs(concurrencies, "--judge-max-concurrency"),
    }
    for option, given in options.items():
        for name in given:
            if name not in bound:
                raise click.BadParameter(f"no --judge {name}=BASE_URL", param_hint=option)
    return {name: _endpoint(name, url, options) for name, url in bound.items()}


def _endpoint(name: str, url: str, options: dict[str, dict[str, str]]) -> JudgeEndpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{url!r} is not an http(s) URL", param_hint="--judge")
    model = options["--judge-model"].get(name)
    if model is None:
        raise click.BadParameter(f"judge {name!r} needs a model", param_hint="--judge-model")
    provider = options["--judge-provider"].get(name, "openai_compatible")
    if provider not in PROVIDERS:
        raise click.BadParameter(
            f"{provider!r} is not one of {', '.join(PROVIDERS)}", param_hint="--judge-provider"
        )
    api_key = None
    variable = options["--judge-api-key-env"].get(name)
    if variable is not None:
        api_key = os.environ.get(variable)
        if not api_key:
            raise click.BadParameter(
                f"environment variable {variable} is not set", param_hint="--judge-api-key-env"
            )
    limit = options["--judge-max-concurrency"].get(name)
    if limit is not None and not (limit.isdigit() and 1 <= int(limit) <= 512):
        raise click.BadParameter(
            f"{limit!r} is not a number from 1 to 512", param_hint="--judge-max-concurrency"
        )
    spec = TargetSpec(
        provider=provider,
        model=model,
        base_url=url,
        max_concurrency=int(limit) if limit is not None else None,
    )
    return JudgeEndpoint(spec, api_key)
