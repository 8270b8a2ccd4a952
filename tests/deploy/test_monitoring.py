"""deploy/k8s/components/monitoring: what a prometheus-operator cluster scrapes, alerts on and
shows, kept equal to what compose uses (deploy/prometheus, deploy/grafana)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from typing import Any

import jsonschema  # installed with kubernetes-validate, which these tests use too
import pytest
import yaml

from tests.support.deploy import ROOT, alert_rules, compose_scrape_jobs, find, load_yaml, pod_spec

SCHEMAS = ROOT / "tests" / "deploy" / "schemas"
METRICS_PORTS = {  # component -> the container port its /metrics is served on
    "api": "http",
    "worker": "health",
    "maintenance": "health",
    "flower": "http",
}


def strict(schema: Any) -> Any:
    """A CRD's structural schema as JSON Schema that refuses unknown fields (the API server
    would prune them silently, so a misspelt field would simply do nothing)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_validator(kind: str) -> jsonschema.Draft7Validator:
    crd = json.loads((SCHEMAS / f"{kind}.json").read_text())
    schema = strict(crd["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def of_kind(rendered, kind: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [doc for doc in rendered if doc["kind"] == kind]


def test_the_generated_objects_are_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/gen-monitoring"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("kind", ["PodMonitor", "PrometheusRule"])
def test_validator_is_not_a_no_op(kind):
    validator = crd_validator(kind)
    bad = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": kind,
        "spec": {"podMetricEndpoint": []},
    }
    assert list(validator.iter_errors(bad))


def test_monitoring_objects_validate_against_their_crds(rendered):
    seen = set()
    for doc in rendered:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            errors = [e.message for e in crd_validator(doc["kind"]).iter_errors(doc)]
            assert not errors, f"{doc['kind']}/{doc['metadata']['name']}: {errors}"
            seen.add(doc["kind"])
    assert seen == {"PodMonitor", "PrometheusRule"}


def test_the_prometheus_rule_is_the_alert_rules_compose_loads(rendered):
    (rule,) = of_kind(rendered, "PrometheusRule")
    assert rule["spec"]["groups"] == load_yaml(ROOT / "deploy/prometheus/alerts.yml")["groups"]
    assert [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]] == [
        r["alert"] for r in alert_rules()
    ]


def test_the_dashboard_config_map_is_the_dashboard_compose_provisions(rendered):
    (config,) = [
        d
        for d in of_kind(rendered, "ConfigMap")
        if "grafana_dashboard" in d["metadata"].get("labels", {})
    ]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config["data"] == {
        "modelcert.json": (ROOT / "deploy/grafana/dashboards/modelcert.json").read_text()
    }
    # A fixed name (no kustomize hash): the sidecar keys its file on it.
    assert config["metadata"]["name"] == "modelcert-grafana-dashboard"


def test_every_component_with_metrics_has_a_pod_monitor(rendered):
    monitors = {d["metadata"]["name"]: d for d in of_kind(rendered, "PodMonitor")}
    assert set(monitors) == {f"modelcert-{c}" for c in METRICS_PORTS}
    jobs = set()
    for component, port in METRICS_PORTS.items():
        monitor = monitors[f"modelcert-{component}"]
        deployment = find(rendered, "Deployment", f"modelcert-{component}")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        selected = [
            d["metadata"]["name"]
            for d in of_kind(rendered, "Deployment")
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected == [deployment["metadata"]["name"]], "a PodMonitor selects one component"
        assert "namespaceSelector" not in monitor["spec"], "its own namespace only"
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["port"] == port and endpoint.get("path", "/metrics") == "/metrics"
        ports = {p["name"] for c in pod_spec(deployment)["containers"] for p in c.get("ports", [])}
        assert port in ports
        (relabel,) = [r for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
        assert relabel.get("action", "replace") == "replace" and "sourceLabels" not in relabel
        jobs.add(relabel["replacement"])
    # The alerts and the dashboard select these job names in both environments.
    assert jobs == compose_scrape_jobs() - {"prometheus"} | {"modelcert-maintenance"}
    beat = find(rendered, "Deployment", "modelcert-beat")
    assert not [c for c in pod_spec(beat)["containers"] if c.get("ports")], "beat serves nothing"


def test_no_pod_is_scraped_by_annotation_too(rendered):
    """The PodMonitors replace the prometheus.io annotations: both would scrape twice."""
    for doc in of_kind(rendered, "Deployment"):
        annotations = doc["spec"]["template"]["metadata"].get("annotations", {})
        assert not [a for a in annotations if a.startswith("prometheus.io/")], doc["metadata"]


def test_a_broken_monitor_is_refused():
    validator = crd_validator("PodMonitor")
    text = (ROOT / "deploy/k8s/components/monitoring/podmonitors.yaml").read_text()
    good = next(yaml.safe_load_all(text))
    assert not list(validator.iter_errors(good))
    bad = copy.deepcopy(good)
    bad["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["target_label"] = "job"
    assert list(validator.iter_errors(bad))
