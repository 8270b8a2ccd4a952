"""The shipped suites, as the API shows them."""

from __future__ import annotations

from app.certification.checks.catalog import REGISTRY
from app.certification.suites import Suite, SuiteError, available_suites, get_suite
from app.config import Settings
from app.schemas.results import SuiteCheck, SuiteDetail, SuiteList, SuiteSummary
from app.services.errors import NotFound


def _summary(suite: Suite) -> SuiteSummary:
    return SuiteSummary(
        name=suite.name,
        version=suite.version,
        content_hash=suite.content_hash,
        description=suite.definition.description,
        covers=list(suite.covers),
    )


def offered(settings: Settings, name: str) -> Suite:
    """The suite named `name` as this deployment offers it; SuiteError when there is none
    (benchmark suites only where MODELCERT_BENCHMARK_SUITES enables them)."""
    suite = get_suite(name)
    if suite.definition.purpose == "benchmark" and not settings.modelcert_benchmark_suites:
        raise SuiteError(f"unknown suite {name!r}")
    return suite


def list_suites(settings: Settings) -> SuiteList:
    return SuiteList(
        items=[
            _summary(s)
            for s in available_suites().values()
            if s.definition.purpose != "benchmark" or settings.modelcert_benchmark_suites
        ]
    )


def describe_suite(settings: Settings, name: str) -> SuiteDetail:
    try:
        suite = offered(settings, name)
    except SuiteError:
        raise NotFound(f"no such suite {name[:100]!r}") from None
    checks = [
        SuiteCheck(
            key=c.key,
            name=c.name,
            description=REGISTRY[c.name].description,
            required=c.required,
            threshold=c.threshold,
            params=dict(c.params),
            requires=REGISTRY[c.name].requires,
        )
        for c in suite.definition.checks
    ]
    return SuiteDetail(
        **_summary(suite).model_dump(),
        max_error_rate=suite.definition.max_error_rate,
        run=suite.definition.run.model_dump(),
        datasets=list(suite.datasets),
        checks=checks,
    )
