"""Kubernetes NetworkPolicy semantics, enough to ask the rendered manifests who may connect where.

A pod is isolated for a direction once any policy that selects it lists that direction in
`policyTypes`; it then accepts only what some such policy's rules allow (policies add up).
A peer is a pod (its namespace, the namespace's labels, its own labels, its address) or an
address outside the cluster. Rules: `from`/`to` absent or empty means every peer; a
`podSelector` alone means pods of the policy's namespace; a `namespaceSelector` alone means every
pod of the matching namespaces; both, pods matching both; an `ipBlock` matches addresses in its
CIDR outside its `except` (used here for addresses outside the cluster, as the Kubernetes docs
advise). `ports` absent means every port; a named port is the target pod's container port.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Peer:
    namespace: str | None = None  # None: not a pod, an address outside the cluster
    labels: dict[str, str] = field(default_factory=dict)
    ip: str | None = None
    ports: dict[str, int] = field(default_factory=dict)  # named container ports

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace} if self.namespace else {}


def external(ip: str) -> Peer:
    return Peer(ip=ip)


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A label selector; {} selects everything."""
    if selector is None:
        return False
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _in_block(block: dict[str, Any], ip: str | None) -> bool:
    if ip is None:
        return False
    address = ipaddress.ip_address(ip)
    network = ipaddress.ip_network(block["cidr"])
    if address.version != network.version or address not in network:
        return False
    return not any(
        address in ipaddress.ip_network(e)
        for e in block.get("except", [])
        if ipaddress.ip_network(e).version == address.version
    )


def _peer_matches(rule_peer: dict[str, Any], policy_namespace: str, peer: Peer) -> bool:
    if "ipBlock" in rule_peer:
        return peer.namespace is None and _in_block(rule_peer["ipBlock"], peer.ip)
    if peer.namespace is None:
        return False
    pods, namespaces = rule_peer.get("podSelector"), rule_peer.get("namespaceSelector")
    if namespaces is None:
        return peer.namespace == policy_namespace and selects(pods, peer.labels)
    if not selects(namespaces, peer.namespace_labels):
        return False
    return pods is None or selects(pods, peer.labels)


def _port_matches(
    rule_ports: list[dict[str, Any]] | None, port: int, protocol: str, target: Peer
) -> bool:
    if not rule_ports:
        return True
    for item in rule_ports:
        if item.get("protocol", "TCP") != protocol:
            continue
        wanted = item.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            wanted = target.ports.get(wanted)
            if wanted is None:
                continue
        if wanted <= port <= item.get("endPort", wanted):
            return True
    return False


def _applicable(policies, pod: Peer, direction: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and selects(p["spec"]["podSelector"], pod.labels)
        and direction in p["spec"].get("policyTypes", ["Ingress"])
    ]


def allowed(policies, source: Peer, target: Peer, port: int, protocol: str = "TCP") -> bool:  # type: ignore[no-untyped-def]
    """Both ends must agree: the source's egress and the target's ingress."""
    if source.namespace is not None:
        egress = _applicable(policies, source, "Egress")
        if egress and not any(
            (
                not rule.get("to")
                or any(_peer_matches(t, p["metadata"]["namespace"], target) for t in rule["to"])
            )
            and _port_matches(rule.get("ports"), port, protocol, target)
            for p in egress
            for rule in p["spec"].get("egress", [])
        ):
            return False
    if target.namespace is not None:
        ingress = _applicable(policies, target, "Ingress")
        if ingress and not any(
            (
                not rule.get("from")
                or any(_peer_matches(f, p["metadata"]["namespace"], source) for f in rule["from"])
            )
            and _port_matches(rule.get("ports"), port, protocol, target)
            for p in ingress
            for rule in p["spec"].get("ingress", [])
        ):
            return False
    return True
