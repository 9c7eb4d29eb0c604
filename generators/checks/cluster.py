"""verify's cluster checks for the Cilium fidelity: pure functions on what was collected.

- ``k8s-api-via-vip``: a real API request from the client container through the apiserver VIP and its DNS
  name, TLS verified against the lab CA; ``/version`` must report the Kubernetes version the lab builds.
- ``lbipam:<namespace>/<name>``: the Service's ``status.loadBalancer.ingress`` holds the addresses it pins.
- ``bgp-node-config:<node>``: each node a CiliumBGPClusterConfig selects has its CiliumBGPNodeConfig.
- ``pool-conditions:<pool>``: the pool's conditions as the operator reports them (a conflict fails).
- ``envoy-backends:<vip>``: every node that advertises a VIP Cilium redirects to Envoy has at least one
  endpoint in that node's Envoy cluster; a node that advertises without one is a blackhole for its share of
  new connections (the seed's headline bug: ``externalTrafficPolicy: Local`` with a CCEC).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..readback.ciliumstate import NodeState
from .verify import CheckResult


@dataclass(frozen=True)
class ClusterFacts:
    """What verify collected from the lab's Kubernetes API and from Cilium on each node."""

    api_probes: list[dict]  # {url, ok, status, version, error} from the client container
    want_version: str  # e.g. v1.35.1
    services: dict[str, dict]  # namespace/name -> {pinned: [...], ingress: [...], conditions: [...]}
    selected_nodes: list[str]  # nodes a CiliumBGPClusterConfig selects (by the node labels k3s sets)
    node_configs: list[str]  # names of the CiliumBGPNodeConfigs the operator wrote
    pools: dict[str, list[dict]]  # pool name -> status.conditions
    states: dict[str, NodeState]  # node -> Cilium's /state


def check_api_via_vip(facts: ClusterFacts) -> CheckResult:
    bad = [p for p in facts.api_probes if not (p.get("ok") and p.get("version") == facts.want_version)]
    ok = bool(facts.api_probes) and not bad
    summary = (f"/version = {facts.want_version} via " + ", ".join(p["url"] for p in facts.api_probes) if ok else
               "; ".join(f"{p.get('url')}: {p.get('error') or 'version ' + str(p.get('version'))}" for p in bad)
               or "no probe ran")
    return CheckResult("k8s-api-via-vip", ok, summary, {"probes": facts.api_probes, "want": facts.want_version})


def check_lbipam(key: str, service: dict) -> CheckResult:
    pinned, ingress = set(service.get("pinned") or []), set(service.get("ingress") or [])
    ok = bool(pinned) and pinned <= ingress
    conditions = {c.get("type"): c.get("status") for c in service.get("conditions") or []}
    summary = (f"{key} holds {', '.join(sorted(pinned))}" if ok else
               f"{key} pins {', '.join(sorted(pinned)) or 'nothing'} but status.loadBalancer.ingress is "
               f"{', '.join(sorted(ingress)) or 'empty'} (conditions: {conditions or 'none'})")
    return CheckResult(f"lbipam:{key}", ok, summary, service)


def check_node_config(node: str, facts: ClusterFacts) -> CheckResult:
    ok = node in facts.node_configs
    return CheckResult(f"bgp-node-config:{node}", ok,
                       f"CiliumBGPNodeConfig {node} {'exists' if ok else 'is missing: the operator did not select it'}",
                       {"node_configs": facts.node_configs})


def check_pool(name: str, conditions: list[dict]) -> CheckResult:
    bad = [c for c in conditions if c.get("type") == "cilium.io/PoolConflict" and c.get("status") == "True"]
    ok = not bad
    shown = ", ".join(f"{c.get('type')}={c.get('status')}" for c in conditions) or "no conditions yet"
    summary = f"pool {name}: {shown}" + ("" if ok else f"; {bad[0].get('message', '')}")
    return CheckResult(f"pool-conditions:{name}", ok, summary, {"conditions": conditions})


def check_envoy_backends(vip: str, facts: ClusterFacts) -> CheckResult | None:
    """None when no node redirects ``vip`` to Envoy (nothing to judge)."""
    advertising, empty, redirected = [], [], False
    for node, state in sorted(facts.states.items()):
        fronts = [f for f in state.load_balancer_frontends() if f.address == vip and f.proxy_redirected]
        if not fronts:
            continue
        redirected = True
        if f"{vip}/32" not in state.advertised():
            continue
        advertising.append(node)
        found = state.envoy_for(fronts[0])
        cluster = found[2] if found else None
        if cluster is None or not cluster.endpoints:
            empty.append(node)
    if not redirected:
        return None
    ok = bool(advertising) and not empty
    share = f"{len(empty)}/{len(advertising)}" if advertising else "all"
    summary = (f"{vip}: every advertising node's Envoy has endpoints ({', '.join(advertising)})" if ok else
               f"{vip}: {', '.join(empty) or 'no node'} advertise{'s' if len(empty) == 1 else ''} it but Cilium gave "
               f"that node's Envoy no endpoint: about {share} of new connections are accepted and closed "
               "(externalTrafficPolicy: Local with a CiliumEnvoyConfig keeps only local backends)")
    return CheckResult(f"envoy-backends:{vip}", ok, summary, {"advertising": advertising, "without_endpoints": empty})


def run_cluster_checks(facts: ClusterFacts, vips: list[str]) -> list[CheckResult]:
    results = [check_api_via_vip(facts)]
    results += [check_lbipam(key, svc) for key, svc in sorted(facts.services.items()) if svc.get("pinned")]
    results += [check_node_config(node, facts) for node in facts.selected_nodes]
    results += [check_pool(name, conds) for name, conds in sorted(facts.pools.items())]
    results += [r for vip in vips if (r := check_envoy_backends(vip, facts)) is not None]
    return results
