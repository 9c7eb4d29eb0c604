"""The cluster's nodes as the twin sees them: only from the rendered ``k3s/<node>/config.yaml`` files."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from generators.rendered import Rendered

# Labels k3s (and the kubelet) put on every server node. Matters for nodeSelectors that use them.
# ``node.kubernetes.io/instance-type=k3s`` comes from k3s's embedded cloud provider; since k3s PR #9721
# (2024, v1.29.3+) a value the kubelet sets through ``node-label`` is respected instead of overwritten.
K3S_INSTANCE_TYPE = "node.kubernetes.io/instance-type"


class NodeInputError(ValueError):
    """A k3s config the twin cannot turn into a node (says which file and what to add)."""


@dataclass(frozen=True)
class NodeInfo:
    name: str
    ip: str  # the node's IPv4 address (k3s node-ip): router-id, stand-in apiserver, BGP source
    labels: dict[str, str] = field(default_factory=dict)
    tls_san: tuple[str, ...] = ()
    node_label_args: tuple[str, ...] = ()  # the k3s ``node-label`` entries as written
    cluster_init: bool = False


def _as_list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [str(value)]


def parse_node_labels(entries: list[str], where: str) -> dict[str, str]:
    """``k=v`` entries (k3s ``node-label``) as a dict; a bare ``k`` means an empty value, as kubelet does."""
    labels: dict[str, str] = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not key:
            raise NodeInputError(f"{where}: node-label entry {entry!r} has no key; write it as key=value")
        labels[key] = value if sep else ""
    return labels


def _node_ip(name: str, config: dict, where: str) -> str:
    for candidate in _as_list(config.get("node-ip")):
        try:
            addr = ipaddress.ip_address(candidate)
        except ValueError as exc:
            raise NodeInputError(f"{where}: node-ip {candidate!r} is not an IP address") from exc
        if addr.version == 4:
            return str(addr)
    raise NodeInputError(
        f"{where}: no IPv4 node-ip; the twin needs each node's address (router-id, stand-in apiserver). "
        f"Add `node-ip: <address>` to the node's k3s config")


def default_labels(name: str, config: dict) -> dict[str, str]:
    """The labels a k3s server node carries without any node-label."""
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        "node-role.kubernetes.io/control-plane": "true",
        "node-role.kubernetes.io/master": "true",
        K3S_INSTANCE_TYPE: "k3s",
        "beta.kubernetes.io/instance-type": "k3s",
    }
    if config.get("cluster-init") or config.get("server"):
        labels["node-role.kubernetes.io/etcd"] = "true"
    return labels


def node_from_config(dir_name: str, config: dict) -> NodeInfo:
    where = f"k3s/{dir_name}/config.yaml"
    name = str(config.get("node-name") or dir_name)
    args = tuple(_as_list(config.get("node-label")))
    labels = default_labels(name, config)
    user = parse_node_labels(list(args), where)
    labels.update(user)
    if K3S_INSTANCE_TYPE in user:
        labels["beta.kubernetes.io/instance-type"] = user[K3S_INSTANCE_TYPE]
    return NodeInfo(name=name, ip=_node_ip(name, config, where), labels=labels,
                    tls_san=tuple(_as_list(config.get("tls-san"))), node_label_args=args,
                    cluster_init=bool(config.get("cluster-init")))


def load_nodes(rendered: Rendered) -> tuple[list[NodeInfo], list[str]]:
    """Every node with a k3s config, by name; problems for configs that cannot be used."""
    nodes: list[NodeInfo] = []
    problems: list[str] = []
    for dir_name in sorted(rendered.k3s):
        try:
            nodes.append(node_from_config(dir_name, rendered.k3s[dir_name]))
        except NodeInputError as exc:
            problems.append(str(exc))
    if not rendered.k3s:
        problems.append("no k3s/<node>/config.yaml in the rendered directory: the twin has no nodes")
    return nodes, problems
