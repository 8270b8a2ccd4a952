"""deploy/k8s: both overlays build, validate against the Kubernetes schemas, and hold together."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.support.deploy import config_map, find, pod_spec, settings_default

KUBERNETES_VERSION = "1.32"
# Not in the Kubernetes schemas: KEDA's are checked by hand below, the prometheus-operator's
# against their CRD schemas in test_monitoring.py.
CRD_GROUPS = ("keda.sh/", "monitoring.coreos.com/")


def _port(container, port) -> int:
    if isinstance(port, int):
        return port
    for item in container.get("ports", []):
        if item.get("name") == port:
            return item["containerPort"]
    raise AssertionError(f"{container['name']} has no port named {port}")


def _container(doc, name=None):
    containers = pod_spec(doc)["containers"]
    return containers[0] if name is None else next(c for c in containers if c["name"] == name)


def test_validator_is_not_a_no_op():
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"portz": []}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_output_validates_against_kubernetes_schemas(rendered):
    kinds = set()
    for doc in rendered:
        kinds.add(doc["kind"])
        if doc["apiVersion"].startswith(CRD_GROUPS):
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "ScaledObject",
        "NetworkPolicy",
    } <= kinds


def test_api_rolls_without_losing_capacity(rendered):
    api = find(rendered, "Deployment", "modelcert-api")
    rolling = api["spec"]["strategy"]["rollingUpdate"]
    assert api["spec"]["strategy"]["type"] == "RollingUpdate" and rolling["maxUnavailable"] == 0
    labels = api["spec"]["template"]["metadata"]["labels"]
    service = find(rendered, "Service", "modelcert-api")
    assert service["spec"]["selector"].items() <= labels.items()
    hpa = find(rendered, "HorizontalPodAutoscaler", "modelcert-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "modelcert-api"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdb = find(rendered, "PodDisruptionBudget", "modelcert-api")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "replicas" not in api["spec"], "the HPA owns the replica count"


def test_probes_point_at_what_the_processes_serve(rendered):
    data = config_map(rendered)
    expected = {
        "modelcert-worker": int(
            data.get("WORKER_HEALTH_PORT", settings_default("WORKER_HEALTH_PORT"))
        ),
        "modelcert-api": int(data.get("API_PORT", settings_default("API_PORT"))),
    }
    assert expected["modelcert-worker"] == settings_default("WORKER_HEALTH_PORT")
    assert expected["modelcert-api"] == settings_default("API_PORT")
    for name, port in expected.items():
        container = _container(find(rendered, "Deployment", name))
        probes = {
            kind: container[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        assert probes["livenessProbe"]["httpGet"]["path"] == "/live"
        assert probes["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert probes["startupProbe"]["httpGet"]["path"] in {"/live", "/ready"}
        for probe in probes.values():
            assert _port(container, probe["httpGet"]["port"]) == port, name


@pytest.mark.parametrize("name", ["modelcert-worker", "modelcert-maintenance"])
def test_workers_drain_within_their_grace_period(rendered, name):
    worker = find(rendered, "Deployment", name)
    grace = int(
        config_map(rendered).get("WORKER_SHUTDOWN_GRACE", settings_default("WORKER_SHUTDOWN_GRACE"))
    )
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > grace
    container = _container(worker)
    assert container["command"][:2] == ["modelcert", "worker"]
    assert "lifecycle" not in container or "preStop" not in container["lifecycle"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    if name == "modelcert-worker":
        assert "replicas" not in worker["spec"], "KEDA owns the replica count"


def _settings(rendered):  # type: ignore[no-untyped-def]
    from app.config import Settings

    return Settings(**{k.lower(): v for k, v in config_map(rendered).items()})


def test_certification_workers_consume_only_the_certification_queue(rendered):
    command = _container(find(rendered, "Deployment", "modelcert-worker"))["command"]
    assert command == [
        "modelcert",
        "worker",
        "--queues",
        _settings(rendered).certification_queue_name,
    ]


def test_maintenance_always_runs_on_a_worker_of_its_own(rendered):
    """Sweeps, re-certification and webhooks run while KEDA holds the certification workers at
    zero: a Deployment that no autoscaler scales consumes the maintenance queue (issue #27)."""
    settings = _settings(rendered)
    maintenance = find(rendered, "Deployment", "modelcert-maintenance")
    command = _container(maintenance)["command"]
    assert command == ["modelcert", "worker", "--queues", settings.maintenance_queue_name]
    assert maintenance["spec"]["replicas"] >= 1
    assert maintenance["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    scaled = {
        d["spec"]["scaleTargetRef"]["name"]
        for d in rendered
        if d["kind"] in {"HorizontalPodAutoscaler", "ScaledObject"}
    }
    assert "modelcert-maintenance" not in scaled
    consumers = {
        d["metadata"]["name"]
        for d in rendered
        if d["kind"] == "Deployment" and _container(d)["command"][:2] == ["modelcert", "worker"]
    }
    assert consumers == {"modelcert-worker", "modelcert-maintenance"}


def test_beat_is_a_single_recreated_pod(rendered):
    beat = find(rendered, "Deployment", "modelcert-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    container = _container(beat)
    mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
    if container.get("securityContext", {}).get("readOnlyRootFilesystem"):
        assert container.get("workingDir") in mounts, "beat writes its schedule to the cwd"
    assert not [
        d
        for d in rendered
        if d["kind"] in {"HorizontalPodAutoscaler", "ScaledObject"}
        and d["spec"]["scaleTargetRef"]["name"] == "modelcert-beat"
    ]


MIGRATING = {"modelcert-api", "modelcert-worker", "modelcert-maintenance"}


def test_pods_that_use_postgres_migrate_first(rendered):
    """An upgrade is one apply or one sync: each new api and worker pod runs `modelcert migrate`
    (under its advisory lock) before it starts, so none runs on an older schema; no Job to wait
    for or to delete before the next release (issue #27)."""
    assert not [d for d in rendered if d["kind"] == "Job"]
    migrating = set()
    for doc in rendered:
        if doc["kind"] != "Deployment":
            continue
        inits = pod_spec(doc).get("initContainers", [])
        if not inits:
            continue
        migrating.add(doc["metadata"]["name"])
        (init,) = inits
        assert init["command"] == ["modelcert", "migrate"]
        assert init["image"].split(":")[0].endswith("modelcert-worker")
        main = _container(doc)
        refs = {e["name"]: e.get("valueFrom") for e in init["env"]}
        assert refs["DATABASE_URL"] == next(
            e["valueFrom"] for e in main["env"] if e["name"] == "DATABASE_URL"
        )
        assert init["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"cpu", "memory"} <= set(init["resources"]["limits"])
        volumes = {v["name"] for v in pod_spec(doc)["volumes"]}
        assert {m["name"] for m in init["volumeMounts"]} <= volumes
    assert migrating == MIGRATING


def test_flower_auth_comes_from_a_secret(rendered):
    flower = _container(find(rendered, "Deployment", "modelcert-flower"))
    auth = next(e for e in flower["env"] if e["name"] == "FLOWER_BASIC_AUTH")
    assert auth["valueFrom"]["secretKeyRef"]["name"] == "modelcert-secrets"
    service = find(rendered, "Service", "modelcert-flower")
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_pods_run_as_non_root(rendered):
    for doc in rendered:
        if doc["kind"] not in {"Deployment", "Job"}:
            continue
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        for container in spec["containers"] + spec.get("initContainers", []):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_keda_scaled_object_scales_the_worker_on_the_queue(rendered):
    scaled = find(rendered, "ScaledObject", "modelcert-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "modelcert-worker"
    find(rendered, "Deployment", spec["scaleTargetRef"]["name"])
    assert isinstance(spec["minReplicaCount"], int) and isinstance(spec["maxReplicaCount"], int)
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    queue = config_map(rendered).get(
        "CERTIFICATION_QUEUE_NAME", settings_default("CERTIFICATION_QUEUE_NAME")
    )
    expected_lists = {queue} | {f"{queue}:{step}" for step in (3, 6, 9)}
    lists, names = set(), set()
    for trigger in spec["triggers"]:
        assert trigger["type"] == "redis"
        meta = trigger["metadata"]
        assert int(meta["listLength"]) >= 1
        lists.add(meta["listName"])
        names.add(trigger["name"])
        auth = find(rendered, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["name"] == "modelcert-secrets"
        params = {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}
        assert "address" in params or "address" in meta or "addressFromEnv" in meta
    assert lists == expected_lists
    modifiers = spec["advanced"]["scalingModifiers"]
    for name in names:
        assert name in modifiers["formula"], f"trigger {name} is not in the formula"
    assert float(modifiers["target"]) > 0
    assert spec["minReplicaCount"] >= (0 if "dev" in scaled["metadata"].get("namespace", "") else 1)
