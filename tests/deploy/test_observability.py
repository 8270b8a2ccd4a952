"""The Grafana dashboard and the alert rules use only metrics modelcert exports."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.support.deploy import (
    MODELCERT_METRICS,
    ROOT,
    alert_rules,
    alert_tests,
    compose_scrape_jobs,
    dashboard,
    dashboard_exprs,
    load_yaml,
    metric_names_in_promql,
    needs_tool,
    unknown_metrics,
)


@pytest.mark.parametrize(
    "expr, names",
    [
        (
            "sum by (status) (rate(modelcert_certifications_total[5m]))",
            {"modelcert_certifications_total"},
        ),
        (
            "histogram_quantile(0.95, sum by (le) "
            '(rate(x_bucket{a="b",c=~"d|e"}[$__rate_interval])))',
            {"x_bucket"},
        ),
        ("(sum(modelcert_worker_ready) or vector(0)) < 1", {"modelcert_worker_ready"}),
        ("a / on(job) group_left(version) b > 1e9", {"a", "b"}),
        ('up{job="worker"} == 0 unless c offset 1h', {"up", "c"}),
        ("max by (instance) (m) > 0.9 * 1536 * 1024", {"m"}),
        ('sum(rate(m{l="sum(fake_metric)"}[5m])) without (le)', {"m"}),
        ("ns:rule:rate5m", {"ns:rule:rate5m"}),
    ],
)
def test_metric_names_in_promql(expr, names):
    assert metric_names_in_promql(expr) == names


def test_unknown_metrics_accepts_histogram_series_only_for_histograms():
    assert not unknown_metrics("modelcert_endpoint_latency_seconds_bucket")
    assert unknown_metrics("modelcert_queue_depth_bucket") == {"modelcert_queue_depth_bucket"}
    assert unknown_metrics("modelcert_nope_total") == {"modelcert_nope_total"}


def test_dashboard_uses_only_known_metrics():
    exprs = dashboard_exprs()
    assert exprs
    for expr in exprs:
        assert not unknown_metrics(expr), f"unknown metric in dashboard: {expr}"


def test_dashboard_shows_what_operators_need():
    joined = "\n".join(dashboard_exprs())
    assert "by (status)" in joined and "by (verdict)" in joined
    assert (
        "histogram_quantile" in joined
        and "modelcert_certification_duration_seconds_bucket" in joined
    )
    for metric in (
        "modelcert_queue_depth",
        "modelcert_retries_total",
        "modelcert_endpoint_latency_seconds_bucket",
        "modelcert_worker_rss_bytes",
        "modelcert_oldest_queued_job_age_seconds",
    ):
        assert metric in joined, metric


def _panels(panels):  # type: ignore[no-untyped-def]
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def test_dashboard_picks_its_datasource():
    """No hard-coded datasource uid: every panel and query uses $datasource, a variable over the
    Prometheus datasources (the compose one is provisioned as the default)."""
    datasources = load_yaml(ROOT / "deploy/grafana/provisioning/datasources/prometheus.yaml")
    assert any(d["type"] == "prometheus" and d.get("isDefault") for d in datasources["datasources"])
    board = dashboard()
    assert board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = []
    for panel in _panels(board["panels"]):
        ids.append(panel["id"])
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    provider = load_yaml(ROOT / "deploy/grafana/provisioning/dashboards/modelcert.yaml")
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboard_variables_filter_namespace_and_queue():
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    for name in ("namespace", "queue"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"]["uid"] == "${datasource}"
        # All is ".*", which also matches a missing label: compose's series have no namespace.
        assert variable["includeAll"] and variable["allValue"] == ".*"
        assert variable["multi"]
    assert variables["namespace"]["query"]["query"] == (
        "label_values(modelcert_worker_ready, namespace)"
    )
    assert 'namespace=~"$namespace"' in variables["queue"]["query"]["query"]


SELECTOR = re.compile(r"\b(modelcert_\w+)(\{[^}]*\})?")


def test_every_dashboard_query_follows_the_variables():
    queue_metrics = {"modelcert_queue_depth", "modelcert_worker_queue_ready"}
    for expr in dashboard_exprs():
        selectors = SELECTOR.findall(expr)
        assert selectors, expr
        for metric, matchers in selectors:
            assert 'namespace=~"$namespace"' in matchers, f"{metric} in {expr}"
            if metric in queue_metrics:
                assert 'queue=~"$queue"' in matchers, f"{metric} in {expr}"


def test_dashboard_shows_maintenance_and_webhooks():
    joined = "\n".join(dashboard_exprs())
    assert "modelcert_webhook_deliveries_total" in joined
    assert "by (outcome)" in joined
    assert "modelcert_worker_queue_ready" in joined
    assert "modelcert_worker_memory_limit_bytes" in joined


def test_alert_rules_are_well_formed_and_use_known_metrics():
    rules = alert_rules()
    assert rules
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert {"alert", "expr", "labels", "annotations"} <= set(rule), rule.get("alert")
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"].get("summary")
        assert not unknown_metrics(rule["expr"]), f"{rule['alert']}: {rule['expr']}"


needs_promtool = needs_tool("promtool", "prometheus")


@needs_promtool
def test_promtool_accepts_the_alert_rules():
    """Full PromQL and template check of the alert rules."""
    result = subprocess.run(
        ["promtool", "check", "rules", str(ROOT / "deploy/prometheus/alerts.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_dashboard_queries_parse(tmp_path):
    """Every dashboard query must parse as PromQL."""
    rules = [
        {"record": f"dashboard:query:{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, expr in enumerate(dashboard_exprs())
    ]
    variables = dashboard()["templating"]["list"]
    rules += [
        {"record": f"dashboard:variable:{v['name']}", "expr": _label_values_selector(v)}
        for v in variables
        if v["type"] == "query"
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _label_values_selector(variable) -> str:  # type: ignore[no-untyped-def]
    """The series selector of a `label_values(selector, label)` variable query."""
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
    assert match, variable["query"]
    assert not unknown_metrics(match.group(1)), variable["name"]
    return match.group(1)


def test_alerts_cover_the_failure_modes():
    used = {name for rule in alert_rules() for name in metric_names_in_promql(rule["expr"])}
    for metric in (
        "modelcert_worker_restarts_total",  # crash / restart rate
        "modelcert_worker_rss_bytes",  # memory near limit
        "modelcert_oldest_queued_job_age_seconds",  # queue delay
        "modelcert_certifications_total",  # failure rate
        "modelcert_worker_ready",  # no ready workers
        "modelcert_worker_queue_ready",  # a queue nobody consumes
        "modelcert_webhook_deliveries_total",  # receivers unreachable
    ):
        assert metric in used, f"no alert on {metric}"
        assert metric in MODELCERT_METRICS


@needs_promtool
def test_alert_rules_pass_their_unit_tests():
    """deploy/prometheus/alerts.test.yml: series as Kubernetes and compose label them."""
    result = subprocess.run(
        ["promtool", "test", "rules", str(ROOT / "deploy/prometheus/alerts.test.yml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_fires_it():
    firing = {
        case["alertname"]
        for test in alert_tests()["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert firing == {rule["alert"] for rule in alert_rules()}


AGGREGATION = re.compile(r"\b(sum|max|min|avg|count)\b\s*(by\s*\(([^)]*)\))?\s*\(")


def test_alerts_aggregate_per_namespace():
    """One Prometheus may watch several modelcert namespaces: every aggregation keeps
    `namespace` (absent under compose, where it makes one group)."""
    seen = 0
    for rule in alert_rules():
        for match in AGGREGATION.finditer(rule["expr"]):
            seen += 1
            labels = {label.strip() for label in (match.group(3) or "").split(",")}
            assert "namespace" in labels, f"{rule['alert']}: {match.group(0)} drops namespace"
    assert seen >= 10, "the pattern finds the aggregations"


def test_alerts_select_jobs_both_environments_have():
    """Compose's scrape jobs and the PodMonitors' job names are the same modelcert-<component>;
    each job matcher in the alerts selects at least one of them."""
    jobs = compose_scrape_jobs()
    assert {"modelcert-api", "modelcert-worker", "modelcert-flower"} <= jobs
    for rule in alert_rules():
        for op, value in re.findall(r'\bjob\s*(=~|=)\s*"([^"]*)"', rule["expr"]):
            pattern = value if op == "=~" else re.escape(value)
            assert any(re.fullmatch(pattern, job) for job in jobs), (rule["alert"], value)
