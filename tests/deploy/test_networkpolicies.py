"""deploy/k8s network policies: who may reach each component, and where the workers may go
(a backstop to the in-app SSRF guard). The rendered policies are evaluated (netpol.py), not
grepped; tests/deploy/test_kustomize.py validates them against the Kubernetes schemas."""

from __future__ import annotations

import ipaddress

import pytest

from tests.support.deploy import pod_spec
from tests.support.netpol import Peer, allowed, external

PROMETHEUS = Peer("monitoring", {"app.kubernetes.io/name": "prometheus"})
GRAFANA = Peer("monitoring", {"app.kubernetes.io/name": "grafana"})
INGRESS = Peer("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
CI_RUNNER = Peer("ci", {"app": "runner", "modelcert.io/api-client": "true"})
STRANGER = Peer("default", {"app": "curl"})
KUBE_DNS = Peer("kube-system", {"k8s-app": "kube-dns"})
POSTGRES = external("10.20.0.5")  # a managed database in the VPC
REDIS = external("10.20.0.6")
PUBLIC = ["93.184.216.34", "2606:4700:4700::1111"]  # a model endpoint on the internet
PRIVATE = ["10.0.0.5", "172.16.0.1", "192.168.1.1", "100.64.0.1", "fd12::1", "fe80::1"]
METADATA = ["169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16", "192.0.0.192"]
# The worker's internet rule must exclude at least these (issue #27).
EXCLUDED = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "fd00::/8",
    "fe80::/10",
]
COMPONENTS = ("api", "worker", "maintenance", "beat", "flower")


@pytest.fixture()
def policies(rendered):
    found = [d for d in rendered if d["kind"] == "NetworkPolicy"]
    assert found
    return found


@pytest.fixture()
def pods(rendered) -> dict[str, Peer]:
    """Each component's pod as a peer: its namespace, labels and named ports."""
    out = {}
    for doc in rendered:
        if doc["kind"] != "Deployment":
            continue
        spec = pod_spec(doc)
        ports = {
            p["name"]: p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])
        }
        labels = doc["spec"]["template"]["metadata"]["labels"]
        out[labels["app.kubernetes.io/component"]] = Peer(
            doc["metadata"]["namespace"], labels, ports=ports
        )
    assert set(out) == set(COMPONENTS)
    return out


def test_every_pod_is_denied_by_default(policies, pods):
    """A pod no component policy names (a debug pod, a future component) gets nothing."""
    namespace = pods["api"].namespace
    debug = Peer(namespace, {"run": "debug"}, ports={"http": 8080})
    for peer in (PROMETHEUS, STRANGER, pods["api"]):
        assert not allowed(policies, peer, debug, 8080)
    assert not allowed(policies, debug, KUBE_DNS, 53, "UDP")
    assert not allowed(policies, debug, external(PUBLIC[0]), 443)
    for component, pod in pods.items():
        assert not allowed(policies, STRANGER, pod, 8000), component
        assert not allowed(policies, STRANGER, pod, 3002), component


def test_who_may_reach_the_api(policies, pods):
    api = pods["api"]
    port = api.ports["http"]
    for peer in (INGRESS, PROMETHEUS, CI_RUNNER):
        assert allowed(policies, peer, api, port), peer
    for peer in (STRANGER, GRAFANA, pods["worker"], pods["flower"], pods["beat"]):
        assert not allowed(policies, peer, api, port), peer
    assert not allowed(policies, INGRESS, api, port + 1), "only the API's port"


@pytest.mark.parametrize("component", ["worker", "maintenance"])
def test_only_prometheus_reaches_the_worker_probes(policies, pods, component):
    """/metrics, /health and /ready on 3002: Prometheus scrapes them; the kubelet's probes come
    from the pod's own node, which network policies never block."""
    worker = pods[component]
    port = worker.ports["health"]
    assert allowed(policies, PROMETHEUS, worker, port)
    for peer in (STRANGER, GRAFANA, INGRESS, CI_RUNNER, pods["api"], pods["flower"]):
        assert not allowed(policies, peer, worker, port), peer


def test_only_prometheus_reaches_flower(policies, pods):
    """Flower's /metrics needs no credentials: not even the namespace's own pods reach it
    (operators use `kubectl port-forward`, which no policy sees)."""
    flower = pods["flower"]
    port = flower.ports["http"]
    assert allowed(policies, PROMETHEUS, flower, port)
    for peer in (STRANGER, GRAFANA, INGRESS, CI_RUNNER, pods["api"], pods["worker"]):
        assert not allowed(policies, peer, flower, port), peer


def test_nothing_reaches_beat(policies, pods):
    for peer in (PROMETHEUS, STRANGER, pods["api"], pods["worker"]):
        for port in (80, 3002, 5555, 8000):
            assert not allowed(policies, peer, pods["beat"], port)


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_component_resolves_names_and_reaches_its_stores(policies, pods, component):
    pod = pods[component]
    assert allowed(policies, pod, KUBE_DNS, 53, "UDP")
    assert allowed(policies, pod, KUBE_DNS, 53, "TCP")
    assert not allowed(policies, pod, KUBE_DNS, 80)
    assert allowed(policies, pod, REDIS, 6379)
    uses_postgres = component in {"api", "worker", "maintenance"}  # beat and Flower: Redis only
    assert allowed(policies, pod, POSTGRES, 5432) == uses_postgres


@pytest.mark.parametrize("component", ["api", "beat", "flower"])
def test_components_that_call_no_endpoint_have_no_internet(policies, pods, component):
    for ip in PUBLIC + PRIVATE + METADATA:
        for port in (80, 443, 8000):
            assert not allowed(policies, pods[component], external(ip), port), (ip, port)


@pytest.mark.parametrize("component", ["worker", "maintenance"])
def test_workers_reach_the_internet_and_nothing_private(policies, pods, component):
    """Model endpoints and webhook receivers: public addresses on any port; never the cluster,
    private or link-local ranges, or a cloud's metadata service, on any port."""
    worker = pods[component]
    for ip in PUBLIC:
        for port in (443, 80, 8000, 11434):
            assert allowed(policies, worker, external(ip), port), (ip, port)
    for ip in PRIVATE:
        for port in (80, 443, 8000):
            assert not allowed(policies, worker, external(ip), port), (ip, port)
    for ip in METADATA:
        for port in (80, 443, 5432, 6379, 8080):
            assert not allowed(policies, worker, external(ip), port), (ip, port)
    # Pods of the cluster only on the stores' ports (an in-cluster Postgres or Redis).
    assert allowed(policies, worker, Peer("databases", {"app": "postgres"}), 5432)
    for peer in (pods["api"], pods["flower"], STRANGER, PROMETHEUS):
        assert not allowed(policies, worker, peer, 8000), peer


def test_the_worker_internet_rule_excludes_the_cluster_and_metadata_ranges(policies):
    (worker,) = [p for p in policies if p["metadata"]["name"] == "modelcert-worker"]
    blocks = [
        peer["ipBlock"]
        for rule in worker["spec"]["egress"]
        if not rule.get("ports")  # the internet rule: any port
        for peer in rule["to"]
    ]
    assert {ipaddress.ip_network(b["cidr"]).version for b in blocks} == {4, 6}
    for block in blocks:
        cidr = ipaddress.ip_network(block["cidr"])
        excepted = [ipaddress.ip_network(e) for e in block["except"]]
        for network in map(ipaddress.ip_network, EXCLUDED):
            if network.version == cidr.version:
                assert any(network.subnet_of(e) for e in excepted), f"{network} not excluded"
        for ip in map(ipaddress.ip_address, METADATA):
            if ip.version == cidr.version:
                assert any(ip in e for e in excepted), f"{ip} not excluded"


def _policy(spec):  # type: ignore[no-untyped-def]
    return {"metadata": {"name": "p", "namespace": "ns"}, "spec": spec}


def test_the_evaluator_follows_the_kubernetes_semantics():
    target = Peer("ns", {"app": "t"}, ports={"http": 8000})
    same_ns, other_ns = Peer("ns", {"role": "client"}), Peer("other", {"role": "client"})
    assert allowed([], STRANGER, target, 8000), "no policy: not isolated"
    deny = _policy({"podSelector": {}, "policyTypes": ["Ingress"]})
    assert not allowed([deny], same_ns, target, 8000)
    pods_only = _policy(
        {
            "podSelector": {"matchLabels": {"app": "t"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}],
        }
    )
    assert allowed([deny, pods_only], same_ns, target, 8000)
    assert not allowed([deny, pods_only], other_ns, target, 8000), (
        "podSelector alone: own namespace"
    )
    both = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "client"}}}
    either = [{"namespaceSelector": {}}, {"podSelector": {"matchLabels": {"role": "x"}}}]
    anded = _policy({"podSelector": {}, "ingress": [{"from": [both], "ports": [{"port": "http"}]}]})
    ored = _policy({"podSelector": {}, "ingress": [{"from": either}]})
    assert allowed([anded], other_ns, target, 8000) and not allowed([anded], STRANGER, target, 8000)
    assert not allowed([anded], other_ns, target, 8001), "named port resolved on the target"
    assert allowed([ored], STRANGER, target, 8000), "separate entries: either"
    block = _policy(
        {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}],
        }
    )
    assert allowed([block], target, external("8.8.8.8"), 53, "UDP")
    assert not allowed([block], target, external("10.1.1.1"), 53, "UDP")
    assert not allowed([block], target, external("2001:db8::1"), 53, "UDP"), "other family"
