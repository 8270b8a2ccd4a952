"""The private signing key reaches only the components that sign: the worker (issue #22).

The API publishes the public keys from the database; beat, Flower and the migration need
none. So in compose only the worker service gets MODELCERT_SIGNING_KEY, and in Kubernetes
the key lives in a Secret of its own (`modelcert-signing`) that only the worker references.
"""

from __future__ import annotations

import yaml

from tests.support.deploy import ROOT, compose, modelcert_services, pod_spec

SIGNING = {"worker"}  # compose services / Kubernetes containers that sign
SIGNING_SECRET = "modelcert-signing"


def _secrets_read(container) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(Secret, key) pairs a container can read, whole Secrets as (name, '*')."""
    read = set()
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            read.add((ref["name"], ref["key"]))
    for source in container.get("envFrom", []):
        if "secretRef" in source:
            read.add((source["secretRef"]["name"], "*"))
    return read


def test_compose_gives_the_signing_key_to_the_worker_alone():
    services = modelcert_services()
    holders = {
        name
        for name, svc in services.items()
        if "MODELCERT_SIGNING_KEY" in (svc.get("environment") or {})
    }
    assert holders == SIGNING
    for name in ("api", "beat", "flower", "migrate", "reference-endpoint"):
        env = services[name].get("environment") or {}
        assert not any("SIGNING" in key for key in env), name
    assert "MODELCERT_SIGNING_KEY" not in compose()["x-modelcert-env"]


def test_kubernetes_gives_the_signing_key_to_the_worker_alone(rendered):
    pods = {}
    for doc in rendered:
        if doc["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet", "CronJob"}:
            spec = pod_spec(doc)
            for container in spec["containers"] + spec.get("initContainers", []):
                pods[f"{doc['metadata']['name']}:{container['name']}"] = container
                volumes = {v["name"]: v for v in spec.get("volumes", [])}
                for mount in container.get("volumeMounts", []):
                    secret = volumes.get(mount["name"], {}).get("secret", {})
                    assert secret.get("secretName") != SIGNING_SECRET, mount
    readers = {
        where
        for where, container in pods.items()
        if any(name == SIGNING_SECRET for name, _ in _secrets_read(container))
    }
    assert readers and {where.split(":")[1] for where in readers} == SIGNING
    for where, container in pods.items():
        for name, key in _secrets_read(container):
            assert key != "*", f"{where} reads the whole Secret {name}: name the keys"
            assert key != "signing-key" or name == SIGNING_SECRET, where
        names = {item["name"] for item in container.get("env", [])}
        if where.split(":")[1] not in SIGNING:
            assert "MODELCERT_SIGNING_KEY" not in names, where


def test_the_example_secrets_keep_the_signing_key_apart():
    path = ROOT / "deploy/k8s/base/secret.example.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    by_name = {d["metadata"]["name"]: set(d["stringData"]) for d in docs}
    assert by_name[SIGNING_SECRET] == {"signing-key"}
    assert "signing-key" not in by_name["modelcert-secrets"]
