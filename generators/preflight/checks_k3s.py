"""k3s server configs: join consistency, Cilium as the only CNI, servicelb, cluster-init, kube-proxy order."""
from __future__ import annotations

from typing import Any

from generators.readback.values import as_bool, as_list

from .context import Context, Node

# k3s refuses a join when one of these differs from the cluster's (CriticalControlArgs in k3s),
# with the k3s default used when the key is absent.
CRITICAL_KEYS: dict[str, Any] = {
    "cluster-cidr": "10.42.0.0/16",
    "service-cidr": "10.43.0.0/16",
    "cluster-dns": "10.43.0.10",
    "cluster-domain": "cluster.local",
    "disable-cloud-controller": False,
    "disable-helm-controller": False,
    "disable-network-policy": False,
    "secrets-encryption": False,
    "embedded-registry": False,
    "flannel-backend": "vxlan",
    "flannel-ipv6-masq": False,
    "flannel-external-ip": False,
    "egress-selector-mode": "agent",
    "supervisor-metrics": False,
}
DISABLED_SERVICELB = "disable: servicelb"


def _disabled(node: Node) -> set[str]:
    return {d.lower() for d in as_list(node.config.get("disable"))}


def _normalized(node: Node, key: str) -> Any:
    if key == DISABLED_SERVICELB:
        return "servicelb" in _disabled(node)
    default = CRITICAL_KEYS[key]
    raw = node.config.get(key, default)
    if isinstance(default, bool):
        value = as_bool(raw)
        return raw if value is None else value
    return tuple(sorted(as_list(raw)))


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value) or "''"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _initializers(nodes: list[Node]) -> list[Node]:
    return [n for n in nodes if not n.config.get("server")]


def check_cluster_keys(ctx: Context) -> None:
    if len(ctx.nodes) < 2:
        return
    inits = _initializers(ctx.nodes)
    reference = inits[0] if len(inits) == 1 else ctx.nodes[0]
    for key in [*CRITICAL_KEYS, DISABLED_SERVICELB]:
        want = _normalized(reference, key)
        for node in ctx.nodes:
            have = _normalized(node, key)
            if node is reference or have == want:
                continue
            path = "disable" if key == DISABLED_SERVICELB else key
            ctx.add("K3S-CLUSTER-KEYS", node.file, node.document, path,
                    f"{key} is {_show(have)} on {node.name} but {_show(want)} on {reference.name}: k3s refuses the "
                    f"join ('critical configuration value mismatch') and {node.name} never becomes a server.",
                    f"use the same {path} on every server")


def check_cni(ctx: Context) -> None:
    if not ctx.has_cilium_values:
        return
    for node in ctx.nodes:
        backend = str(node.config.get("flannel-backend", "vxlan")).strip().lower()
        if backend != "none":
            ctx.add("K3S-FLANNEL", node.file, node.document, "flannel-backend",
                    f"flannel-backend is {backend!r} (k3s's default is vxlan) while Cilium is the CNI: flannel and "
                    "Cilium both configure the pod network; pods get addresses from the wrong CNI and cross-node "
                    "traffic breaks.",
                    "set flannel-backend: none on every server")
        if as_bool(node.config.get("disable-network-policy")) is not True:
            ctx.add("K3S-NETWORK-POLICY", node.file, node.document, "disable-network-policy",
                    "k3s's embedded network policy controller (kube-router) stays on next to Cilium and programs "
                    "its own iptables rules for NetworkPolicies that Cilium already enforces.",
                    "set disable-network-policy: true on every server")


def check_servicelb(ctx: Context) -> None:
    for node in ctx.nodes:
        if "servicelb" in _disabled(node):
            continue
        ctx.add("K3S-SERVICELB", node.file, node.document, "disable",
                "servicelb is not disabled: k3s's klipper-lb also serves every LoadBalancer Service (svclb "
                "DaemonSets holding the ports on the node addresses) and competes with Cilium LB-IPAM for "
                "status.loadBalancer.",
                "add servicelb to disable on every server")


def check_cluster_init(ctx: Context) -> None:
    if len(ctx.nodes) < 2:
        return
    inits = _initializers(ctx.nodes)
    if not inits:
        first = ctx.nodes[0]
        ctx.add("K3S-CLUSTER-INIT", first.file, first.document, "server",
                "every server has `server:` set, none initializes the cluster: on a fresh install all of them "
                "wait for a cluster that never starts.",
                f"remove server/token from one server (e.g. {first.name}) and set cluster-init: true there")
        return
    for node in inits[1:]:
        ctx.add("K3S-CLUSTER-INIT", node.file, node.document, "cluster-init",
                f"{node.name} has no `server:` and so initializes a cluster, like {inits[0].name}: "
                f"{len(inits)} separate clusters instead of one HA cluster.",
                f"give {node.name} `server: https://<{inits[0].name}>:6443` and the token, without cluster-init")
    first = inits[0]
    if as_bool(first.config.get("cluster-init")) is not True and not first.config.get("datastore-endpoint"):
        ctx.add("K3S-CLUSTER-INIT", first.file, first.document, "cluster-init",
                f"{first.name} initializes the cluster without cluster-init: true, so it uses SQLite, which "
                "other servers cannot join: the joiners fail.",
                f"set cluster-init: true on {first.name}")


def check_kube_proxy_order(ctx: Context) -> None:
    if not ctx.has_cilium_values or ctx.kube_proxy_replacement() is not False:
        return
    for node in ctx.nodes:
        if as_bool(node.config.get("disable-kube-proxy")) is True:
            ctx.add("K3S-KUBE-PROXY-ORDER", node.file, node.document, "disable-kube-proxy",
                    "disable-kube-proxy is true while Cilium's kubeProxyReplacement is off: after the next k3s "
                    "restart nobody routes Services (ClusterIP, NodePort, LoadBalancer), including the apiserver's "
                    "kubernetes Service.",
                    "first set kubeProxyReplacement: true in Cilium and roll it out; only then disable kube-proxy")


def check_node_ips(ctx: Context) -> None:
    for node in ctx.nodes:
        if node.ip is None:
            ctx.add("K3S-NODE-IP", node.file, node.document, "node-ip",
                    f"{node.name} has no node-ip (k3s then picks the default route's address, which the files do "
                    "not show): the neighbor, EndpointSlice and pool-overlap checks skip the node set.",
                    "set node-ip to the address the node peers from")


def run(ctx: Context) -> None:
    check_node_ips(ctx)
    check_cluster_keys(ctx)
    check_cni(ctx)
    check_servicelb(ctx)
    check_cluster_init(ctx)
    check_kube_proxy_order(ctx)
