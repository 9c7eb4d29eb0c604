"""A node as k3s registers it, from its ``k3s/<node>/config.yaml`` only: name, address, labels, tls-san.

The labels are those a k3s server node carries: the kubelet's own (hostname, os, arch), the server role
labels, ``node.kubernetes.io/instance-type=k3s`` from k3s's embedded cloud provider, the etcd role when
the server runs embedded etcd, and every ``node-label``. Since k3s PR #9721 (2024, v1.29.3+) a
``node-label`` for ``node.kubernetes.io/instance-type`` is respected instead of overwritten.

The twin, preflight and the Cilium lab (which registers these labels on its Node and CiliumNode objects)
all read nodes here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from generators.errors import InputError

from .rendered import K3S_GLOB, Rendered
from .values import as_bool, as_ip, as_list

K3S_INSTANCE_TYPE = "node.kubernetes.io/instance-type"
BETA_INSTANCE_TYPE = "beta.kubernetes.io/instance-type"


class NodeInputError(InputError, ValueError):
    """A k3s config that cannot be turned into a node (says which file and what to add)."""


@dataclass(frozen=True)
class K3sNode:
    name: str
    ip: str | None  # IPv4 from node-ip (else advertise-address); None when the config states none
    labels: dict[str, str] = field(default_factory=dict)
    tls_san: tuple[str, ...] = ()
    node_label_args: tuple[str, ...] = ()  # the k3s ``node-label`` entries as written
    cluster_init: bool = False
    dir_name: str = ""
    config: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def file(self) -> str:
        return K3S_GLOB.replace("*", self.dir_name or self.name)

    @property
    def document(self) -> str:
        return f"k3s:{self.name}"


def parse_node_labels(entries: list[str], where: str) -> dict[str, str]:
    """``k=v`` entries (k3s ``node-label``) as a dict; a bare ``k`` means an empty value, as kubelet does."""
    labels: dict[str, str] = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not key.strip():
            raise NodeInputError(f"{where}: node-label entry {entry!r} has no key; write it as key=value")
        labels[key.strip()] = value.strip() if sep else ""
    return labels


def node_ip(config: dict) -> str | None:
    """The node's IPv4 address as k3s takes it: ``node-ip``, else ``advertise-address``."""
    for key in ("node-ip", "advertise-address"):
        for candidate in as_list(config.get(key)):
            parsed = as_ip(candidate)
            if parsed is not None and parsed.version == 4:
                return str(parsed)
    return None


def embedded_etcd(config: dict) -> bool:
    """A server with ``cluster-init`` or joining with ``server:`` runs embedded etcd (unless datastore-endpoint)."""
    return bool(config.get("cluster-init") or config.get("server")) and not config.get("datastore-endpoint")


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
    }
    if as_bool(config.get("disable-cloud-controller")) is not True:
        labels[K3S_INSTANCE_TYPE] = "k3s"
        labels[BETA_INSTANCE_TYPE] = "k3s"
    if embedded_etcd(config):
        labels["node-role.kubernetes.io/etcd"] = "true"
    return labels


def read_node(dir_name: str, config: dict) -> K3sNode:
    """The node of ``k3s/<dir_name>/config.yaml``; the directory name is the node name unless ``node-name`` says."""
    where = K3S_GLOB.replace("*", dir_name)
    name = str(config.get("node-name") or dir_name)
    args = tuple(as_list(config.get("node-label")))
    labels = default_labels(name, config)
    user = parse_node_labels(list(args), where)
    labels.update(user)
    if K3S_INSTANCE_TYPE in user:
        labels[BETA_INSTANCE_TYPE] = user[K3S_INSTANCE_TYPE]
    return K3sNode(
        name=name,
        ip=node_ip(config),
        labels=labels,
        tls_san=tuple(as_list(config.get("tls-san"))),
        node_label_args=args,
        cluster_init=bool(config.get("cluster-init")),
        dir_name=dir_name,
        config=config,
    )


def read_nodes(rendered: Rendered) -> tuple[list[K3sNode], list[str]]:
    """Every node with a k3s config, by directory name; problems for configs whose labels cannot be read."""
    nodes: list[K3sNode] = []
    problems: list[str] = []
    for dir_name in sorted(rendered.k3s):
        try:
            nodes.append(read_node(dir_name, rendered.k3s[dir_name]))
        except NodeInputError as exc:
            problems.append(str(exc))
    if not rendered.k3s:
        problems.append("no k3s/<node>/config.yaml in the rendered directory: there are no nodes")
    return nodes, problems
