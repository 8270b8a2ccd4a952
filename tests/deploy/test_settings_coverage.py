"""Every setting the code reads is set or safely defaulted everywhere, valid, and documented."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.deploy import (
    ROOT,
    config_map,
    load_yaml,
    modelcert_services,
    pod_spec,
    settings_fields,
)

# Settings whose default is right in a container, so a deployment may leave them unset.
# FLOWER_* only matter to the flower process, which gets them explicitly.
SAFE_DEFAULTS_COMPOSE: set[str] = set()
SAFE_DEFAULTS_K8S: set[str] = set()
ONLY_FOR = {"FLOWER_BASIC_AUTH": "flower", "MODELCERT_SIGNING_KEY": "worker"}
# A worker container that must not hold what other workers do: the maintenance worker signs
# nothing, so it starts without the signing key (app/cli/main.py worker).
NOT_FOR = {"modelcert-maintenance": {"MODELCERT_SIGNING_KEY"}}
SECRETS = {
    "DATABASE_URL",
    "REDIS_URL",
    "MODELCERT_SECRET_KEY",
    "MODELCERT_SIGNING_KEY",
    "FLOWER_BASIC_AUTH",
}
# The Kubernetes Secrets (deploy/k8s/base/secret.example.yaml); test_signing_key.py says which
# component may read which.
SECRET_OBJECTS = {"modelcert-secrets", "modelcert-signing"}
DUMMY = {
    "DATABASE_URL": "postgresql+psycopg://u:p@db.invalid:5432/modelcert",
    "REDIS_URL": "redis://:p@redis.invalid:6379/0",
    "MODELCERT_SECRET_KEY": "bW9kZWxjZXJ0LWRlcGxveS10ZXN0LWR1bW15LWtleSE=",
    "MODELCERT_SIGNING_KEY": "bW9kZWxjZXJ0LWRlcGxveS10ZXN0LWR1bW15LWtleSE=",
    "FLOWER_BASIC_AUTH": "user:password",
}


def variables() -> set[str]:
    return {name.upper() for name in settings_fields()}


def _compose_value(value: object) -> object:
    """`${VAR:-default}` -> default; `${VAR:?msg}` -> a dummy (a secret from .env)."""
    text = str(value)
    text = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", text)
    return re.sub(r"\$\{\w+:\?[^}]*\}", "p", text)


def test_secret_list_is_complete():
    """A new SecretStr field must be added to SECRETS (and to the Secret in deploy/k8s)."""
    secret_fields = {
        name.upper()
        for name, field in settings_fields().items()
        if "SecretStr" in str(field.annotation)
    }
    assert secret_fields <= SECRETS


def test_compose_sets_every_setting():
    seen: set[str] = set()
    for name, svc in modelcert_services().items():
        env = svc.get("environment", {})
        seen |= set(env)
        for var, only in ONLY_FOR.items():
            if var in env:
                assert name == only, f"{var} belongs to {only} only, not {name}"
    missing = variables() - seen - SAFE_DEFAULTS_COMPOSE
    assert not missing, f"compose.yaml neither sets nor lists as safe: {sorted(missing)}"
    unknown = seen - variables()
    assert not unknown, f"compose sets variables Settings does not read: {sorted(unknown)}"


def test_compose_values_are_valid_settings():
    from app.config import Settings

    for svc in modelcert_services().values():
        env = {k: _compose_value(v) for k, v in svc["environment"].items()}
        env.update({k: DUMMY[k] for k in SECRETS if k in env})
        Settings(**{k.lower(): v for k, v in env.items()})  # raises on a value out of range


def _container_env(container) -> tuple[set[str], dict[str, dict]]:
    names, refs = set(), {}
    for item in container.get("env", []):
        names.add(item["name"])
        if "valueFrom" in item:
            refs[item["name"]] = item["valueFrom"]
        else:
            assert item["name"] not in SECRETS, f"{item['name']} inlined in a manifest"
    return names, refs


def test_kubernetes_sets_every_setting(rendered):
    data = config_map(rendered)
    assert not (set(data) & SECRETS), "secrets do not belong in the ConfigMap"
    for doc in rendered:
        if doc["kind"] not in {"Deployment", "Job"}:
            continue
        for container in pod_spec(doc)["containers"] + pod_spec(doc).get("initContainers", []):
            names, refs = _container_env(container)
            sources = [
                e["configMapRef"]["name"]
                for e in container.get("envFrom", [])
                if "configMapRef" in e
            ]
            assert any(s.startswith("modelcert-config") for s in sources), doc["metadata"]["name"]
            for var, ref in refs.items():
                assert "secretKeyRef" in ref and ref["secretKeyRef"]["name"] in SECRET_OBJECTS, var
            for var, only in ONLY_FOR.items():
                assert var not in names or container["name"] == only, (
                    f"{var} belongs to {only} only, not {doc['metadata']['name']}"
                )
            seen = names | set(data)
            expected = (
                variables()
                - SAFE_DEFAULTS_K8S
                - {v for v, only in ONLY_FOR.items() if only != container["name"]}
                - NOT_FOR.get(doc["metadata"]["name"], set())
            )
            missing = expected - seen
            assert not missing, f"{doc['metadata']['name']} misses {sorted(missing)}"
    unknown = set(data) - variables()
    assert not unknown, f"ConfigMap keys Settings does not read: {sorted(unknown)}"


def test_kubernetes_config_is_valid(rendered):
    from app.config import Settings

    data = config_map(rendered)
    Settings(**{k.lower(): v for k, v in data.items()}, **{k.lower(): v for k, v in DUMMY.items()})


def test_no_secret_in_the_kustomize_output(rendered):
    assert not [d for d in rendered if d["kind"] == "Secret"], "Secrets are created out of band"
    base = load_yaml(ROOT / "deploy/k8s/base/kustomization.yaml")
    assert "secret.example.yaml" not in base["resources"]


@pytest.mark.parametrize("var", sorted(v.upper() for v in settings_fields()))
def test_every_setting_is_documented(var):
    assert f"`{var}`" in (ROOT / "docs/configuration.md").read_text()


def test_configuration_table_is_generated_from_settings():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/gen-config-docs"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
