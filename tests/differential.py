"""The differential corpus: single mutations of the rendered files, each judged by the Python twin and by
Cilium's own code in the lab, and the two observations compared.

An observation is what matters to a user of the design: the LoadBalancer IP of every Service, the prefixes
each node advertises, the next-hops per VIP, and the backends each node's Envoy (HAProxy in the lab) would
use for each VIP it proxies. ``twin_observation`` reads the twin's plan; ``cilium_observation`` reads
Cilium's /state on every node and the Services' status from the lab's API.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from generators.output import write_tree
from generators.readback.k3s import read_nodes
from generators.readback.rendered import load_rendered
from generators.readback.services import read_services
from generators.twin import plan_twin

Files = dict[str, str]
APISERVER = "cilium/kube-apiserver-bgp.yaml"
BGP = "cilium/bgp.yaml"
PLATFORM = "platform/values.yaml"


# ----------------------------------------------------------------------------- editing rendered files
def docs(files: Files, rel: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(files[rel]) if d]


def put(files: Files, rel: str, documents: list[dict]) -> Files:
    return {**files, rel: yaml.safe_dump_all(documents, sort_keys=False)}


def edit_kind(rel: str, kind: str, fn: Callable[[dict], None]) -> Callable[[Files], Files]:
    def mutate(files: Files) -> Files:
        out = copy.deepcopy(docs(files, rel))
        hits = [d for d in out if d["kind"] == kind]
        assert hits, f"no {kind} in {rel}"
        for d in hits:
            fn(d)
        return put(files, rel, out)
    return mutate


def add_doc(rel: str, make: Callable[[list[dict]], dict]) -> Callable[[Files], Files]:
    def mutate(files: Files) -> Files:
        current = docs(files, rel)
        return put(files, rel, [*current, make(current)])
    return mutate


def edit_platform(fn: Callable[[dict], None]) -> Callable[[Files], Files]:
    def mutate(files: Files) -> Files:
        values = yaml.safe_load(files[PLATFORM])
        fn(values)
        return {**files, PLATFORM: yaml.safe_dump(values, sort_keys=False)}
    return mutate


def _cluster(d: dict) -> dict:
    return next(r for r in d["spec"]["resources"] if r["@type"].endswith("Cluster"))


def _annotate(d: dict, key: str, value: str) -> None:
    d["metadata"].setdefault("annotations", {})[key] = value


def _drop_endpoint(node: str) -> Callable[[dict], None]:
    def fn(d: dict) -> None:
        d["endpoints"] = [e for e in d["endpoints"] if e.get("nodeName") != node]
    return fn


def _endpoint_condition(node: str, **conditions: bool) -> Callable[[dict], None]:
    def fn(d: dict) -> None:
        for e in d["endpoints"]:
            if e.get("nodeName") == node:
                e["conditions"] = {**e.get("conditions", {}), **conditions}
    return fn


def _second_block(d: dict) -> None:
    d["spec"]["blocks"] = [{"cidr": "10.31.0.64/28"}, {"cidr": "10.31.0.96/29"}, *d["spec"]["blocks"]]


def _traefik_pin(value: str | None) -> Callable[[dict], None]:
    def fn(values: dict) -> None:
        annotations = values["traefik"]["values"]["service"].setdefault("annotations", {})
        if value is None:
            annotations.pop("lbipam.cilium.io/ips", None)
        else:
            annotations["lbipam.cilium.io/ips"] = value
    return fn


def _seq(*fns: Callable[[Files], Files]) -> Callable[[Files], Files]:
    def mutate(files: Files) -> Files:
        for fn in fns:
            files = fn(files)
        return files
    return mutate


def _duplicate_cluster_config(current: list[dict]) -> dict:
    cc = copy.deepcopy(next(d for d in current if d["kind"] == "CiliumBGPClusterConfig"))
    cc["metadata"]["name"] = "cilium-bgp-second"
    return cc


def _l2_class(d: dict) -> None:
    d["spec"]["loadBalancerClass"] = "io.cilium/l2-announcer"


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    apply: Callable[[Files], Files]
    # objects deleted before this mutation is applied: the apiserver refuses the change in place (an
    # immutable field), so a user would delete and re-create them too
    recreate: tuple[tuple[str, str, str, str], ...] = ()


MUTATIONS: list[Mutation] = [
    Mutation("baseline", "the seed, unchanged", lambda f: f),
    Mutation("pin-other-vip", "apiserver pinned to 10.31.0.85 (in the pool)",
             edit_kind(APISERVER, "Service", lambda d: _annotate(d, "lbipam.cilium.io/ips", "10.31.0.85"))),
    Mutation("pin-outside-pool", "apiserver pinned to 10.31.0.100 (outside every pool)",
             edit_kind(APISERVER, "Service", lambda d: _annotate(d, "lbipam.cilium.io/ips", "10.31.0.100"))),
    Mutation("pin-unparseable", "apiserver's lbipam.cilium.io/ips is not an address",
             edit_kind(APISERVER, "Service", lambda d: _annotate(d, "lbipam.cilium.io/ips", "ten.31.0.80"))),
    Mutation("pin-duplicate", "Traefik pinned to the apiserver's 10.31.0.80 too",
             edit_platform(_traefik_pin("10.31.0.80"))),
    Mutation("traefik-unpinned", "Traefik without a pin: LB-IPAM picks the address",
             edit_platform(_traefik_pin(None))),
    Mutation("unpinned-smallest-block", "Traefik unpinned, and the pool gets two more blocks of other sizes",
             _seq(edit_platform(_traefik_pin(None)), edit_kind(BGP, "CiliumLoadBalancerIPPool", _second_block))),
    Mutation("first-last-reserved", "allowFirstLastIPs: No while 10.31.0.80 (the network address) is pinned",
             edit_kind(BGP, "CiliumLoadBalancerIPPool", lambda d: d["spec"].update({"allowFirstLastIPs": "No"}))),
    Mutation("pool-selector", "the pool serves only Services labelled app.kubernetes.io/name=kube-apiserver-bgp",
             edit_kind(BGP, "CiliumLoadBalancerIPPool", lambda d: d["spec"].update(
                 {"serviceSelector": {"matchLabels": {"app.kubernetes.io/name": "kube-apiserver-bgp"}}}))),
    Mutation("pool-disabled", "the pool is disabled",
             edit_kind(BGP, "CiliumLoadBalancerIPPool", lambda d: d["spec"].update({"disabled": True}))),
    Mutation("nodeselector-one", "the ClusterConfig selects only cat01 (kubernetes.io/hostname)",
             edit_kind(BGP, "CiliumBGPClusterConfig", lambda d: d["spec"].update(
                 {"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "cat01"}}}))),
    Mutation("nodeselector-none", "the ClusterConfig's nodeSelector matches no node",
             edit_kind(BGP, "CiliumBGPClusterConfig", lambda d: d["spec"].update(
                 {"nodeSelector": {"matchLabels": {"node.kubernetes.io/instance-type": "baremetal"}}}))),
    Mutation("duplicate-clusterconfig", "a second ClusterConfig selects the same nodes",
             add_doc(BGP, _duplicate_cluster_config)),
    Mutation("advert-selector", "the Advertisement selects only the apiserver Service",
             edit_kind(BGP, "CiliumBGPAdvertisement", lambda d: d["spec"]["advertisements"][0].update(
                 {"selector": {"matchLabels": {"app.kubernetes.io/name": "kube-apiserver-bgp"}}}))),
    Mutation("peer-family-selector", "the PeerConfig's family selects advertisements labelled advertise=other",
             edit_kind(BGP, "CiliumBGPPeerConfig", lambda d: d["spec"]["families"][0].update(
                 {"advertisements": {"matchLabels": {"advertise": "other"}}}))),
    Mutation("advert-external-ip", "the Advertisement advertises ExternalIP instead of LoadBalancerIP",
             edit_kind(BGP, "CiliumBGPAdvertisement", lambda d: d["spec"]["advertisements"][0]["service"].update(
                 {"addresses": ["ExternalIP"]}))),
    Mutation("aggregation", "the Advertisement aggregates Service VIPs to /28 (aggregationLengthIPv4)",
             edit_kind(BGP, "CiliumBGPAdvertisement", lambda d: d["spec"]["advertisements"][0]["service"].update(
                 {"aggregationLengthIPv4": 28}))),
    Mutation("etp-local-ccec", "apiserver eTP Local (bound by the CCEC), EndpointSlice without cat03",
             _seq(edit_kind(APISERVER, "Service", lambda d: d["spec"].update({"externalTrafficPolicy": "Local"})),
                  edit_kind(APISERVER, "EndpointSlice", _drop_endpoint("cat03")))),
    Mutation("etp-local-no-ccec", "apiserver eTP Local, EndpointSlice without cat03, no CCEC",
             _seq(edit_kind(APISERVER, "Service", lambda d: d["spec"].update({"externalTrafficPolicy": "Local"})),
                  edit_kind(APISERVER, "EndpointSlice", _drop_endpoint("cat03")),
                  lambda f: put(f, APISERVER, [d for d in docs(f, APISERVER)
                                               if d["kind"] != "CiliumClusterwideEnvoyConfig"]))),
    Mutation("endpoint-not-ready", "cat02's apiserver endpoint is not ready",
             edit_kind(APISERVER, "EndpointSlice", _endpoint_condition("cat02", ready=False))),
    Mutation("endpoint-terminating", "cat02's apiserver endpoint is terminating (and not ready)",
             edit_kind(APISERVER, "EndpointSlice", _endpoint_condition("cat02", ready=False, terminating=True))),
    Mutation("ccec-duration-ms", "the CCEC cluster's interval_jitter is 100ms (protojson rejects it)",
             edit_kind(APISERVER, "CiliumClusterwideEnvoyConfig",
                       lambda d: _cluster(d)["health_checks"][0].update({"interval_jitter": "100ms"}))),
    Mutation("ccec-invalid-cluster", "the CCEC's health check lacks healthy_threshold (Envoy's validation)",
             edit_kind(APISERVER, "CiliumClusterwideEnvoyConfig",
                       lambda d: _cluster(d)["health_checks"][0].pop("healthy_threshold"))),
    Mutation("ccec-listener-mismatch", "the CCEC binds the Service to a listener it does not define",
             edit_kind(APISERVER, "CiliumClusterwideEnvoyConfig",
                       lambda d: d["spec"]["services"][0].update({"listener": "no-such-listener"}))),
    Mutation("ccec-port", "the CCEC binds only port 7443, which the Service does not have",
             edit_kind(APISERVER, "CiliumClusterwideEnvoyConfig",
                       lambda d: d["spec"]["services"][0].update({"ports": [7443]}))),
    Mutation("ccec-nodeselector", "the CCEC applies only to cat01 (nodeSelector)",
             edit_kind(APISERVER, "CiliumClusterwideEnvoyConfig", lambda d: d["spec"].update(
                 {"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "cat01"}}}))),
    Mutation("lb-class-l2", "the apiserver Service asks for loadBalancerClass io.cilium/l2-announcer",
             edit_kind(APISERVER, "Service", _l2_class),
             recreate=(("v1", "Service", "kube-system", "kube-apiserver-bgp"),)),  # "may not change once set"
]


# ----------------------------------------------------------------------------- observations
def write(files: Files, root: Path) -> Path:
    return write_tree(files, root)


def twin_observation(root: Path, *, scoped: bool = True) -> dict:
    """The twin's plan for the files; ``{"refused": [reasons]}`` when they are outside what it decides
    (generators.twin.scope). ``scoped=False`` asks the twin anyway, for the record of what it would say."""
    from generators.twin.scope import OutsideTwin

    try:
        plan = plan_twin(root, scoped=scoped)
    except OutsideTwin as exc:
        return {"refused": exc.details}
    advertised = {n: sorted({a.prefix for a in plan.advertisements if a.node == n}) for n in plan.nodes}
    backends: dict[str, dict[str, list[str]]] = {}
    for name, node in plan.nodes.items():
        for fe in node.frontends:
            if fe.listener is None:
                continue
            backends.setdefault(f"{fe.vip}:{fe.port}", {})[name] = sorted(f"{b.address}:{b.port}" for b in fe.backends)
    return {"lb_ips": {k: sorted(s.ips) for k, s in plan.services.items() if s.type == "LoadBalancer"},
            "advertised": advertised,
            "next_hops": {vip: sorted(ips) for vip, ips in plan.expected_next_hops.items() if ips},
            "backends": backends}


def cilium_observation(states: dict, lb_ips: dict[str, list[str]], names: dict[str, str]) -> dict:
    from generators.lab.kinds.cilium import proxy_frontends

    advertised = {n: sorted(st.advertised()) for n, st in states.items()}
    next_hops: dict[str, list[str]] = {}
    ip_of = {n: ip for ip, n in names.items()}
    for node, prefixes in advertised.items():
        for prefix in prefixes:
            next_hops.setdefault(prefix.split("/")[0], []).append(ip_of[node])
    backends: dict[str, dict[str, list[str]]] = {}
    for node, state in states.items():
        for fe in proxy_frontends(state, names):
            if fe.listener is None:
                continue
            backends.setdefault(f"{fe.vip}:{fe.port}", {})[node] = sorted(f"{b.address}:{b.port}" for b in fe.backends)
    return {"lb_ips": lb_ips, "advertised": advertised, "next_hops": {k: sorted(v) for k, v in next_hops.items()},
            "backends": backends}


def lb_service_keys(root: Path) -> list[str]:
    rendered = load_rendered(root)
    nodes, _ = read_nodes(rendered)
    services, _ = read_services(rendered, nodes)
    return [s.key for s in services if s.type == "LoadBalancer"]


def differences(twin: dict, cilium: dict) -> list[str]:
    out = []
    for aspect in ("lb_ips", "advertised", "next_hops", "backends"):
        a, b = twin[aspect], cilium[aspect]
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                out.append(f"{aspect}[{key}]: twin {a.get(key)} != cilium {b.get(key)}")
    return out
