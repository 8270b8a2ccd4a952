"""The Grafana dashboard and the alert rules use only metric names that a running worker and
the API really expose (scraped here, after one real certification)."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import certify, create_target, wait_terminal
from tests.support.deploy import (
    CONDITIONAL_METRICS,
    MODELCERT_METRICS,
    PROMETHEUS_SYNTHETIC,
    alert_rules,
    dashboard_exprs,
    metric_names_in_promql,
)

SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def exposed(text: str) -> dict[str, str]:
    """Metric family name (as written in PromQL) → type."""
    names: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        names[name] = family.type
    return names


def series_names(names: dict[str, str]) -> set[str]:
    out = set()
    for name, kind in names.items():
        base = name.removesuffix("_total") if kind == "counter" else name
        out |= {base + suffix for suffix in SUFFIXES.get(kind, ("",))}
        out.add(name)
    return out


@pytest.mark.usefixtures("worker")
def test_dashboard_and_alerts_use_scraped_metric_names(
    client, auth, reference_url, settings
) -> None:  # type: ignore[no-untyped-def]
    target = create_target(client, auth, f"{reference_url}/v1")
    assert wait_terminal(client, auth, certify(client, auth, target))["status"] == "succeeded"
    worker_text = httpx.get(f"http://127.0.0.1:{settings.worker_health_port}/metrics").text
    api_text = client.get("/metrics").get_data(as_text=True)
    scraped = {
        k: v
        for k, v in (exposed(worker_text) | exposed(api_text)).items()
        if k.startswith("modelcert_") and not k.endswith("_created")
    }
    unlisted = {k: v for k, v in scraped.items() if MODELCERT_METRICS.get(k) != v}
    assert not unlisted, f"tests.support.deploy.MODELCERT_METRICS lacks {unlisted}"
    known = series_names(scraped) | PROMETHEUS_SYNTHETIC | set(CONDITIONAL_METRICS)
    for expr in dashboard_exprs() + [str(rule["expr"]) for rule in alert_rules()]:
        unknown = {n for n in metric_names_in_promql(expr) if n not in known}
        assert not unknown, f"{expr!r} uses {unknown}, which /metrics does not expose"
