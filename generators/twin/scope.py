"""Where the twin decides as Cilium does, and where it refuses to guess.

The differential corpus (``tests/differential.py``, run by ``tests/test_differential_e2e.py``) puts single
mutations of the rendered files through the twin and through Cilium's own code in a Cilium lab. Where
the two disagreed, the twin does not carry a second guess at Cilium: it refuses those inputs, names what
it cannot model and points to the Cilium fidelity, which runs Cilium's code. The numbers and each
disagreement are in ``docs/DIFFERENTIAL.md``; the corpus test fails when the twin disagrees with Cilium on
an input it accepts.

Each rule is a feature of the files, not a mutation's name, so a hand-written file that uses it is refused
too.
"""
from __future__ import annotations

import ipaddress

from generators.errors import InputError
from generators.readback.cilium import BGP_LB_CLASS, Bgp, envoy_configs, pools, validate_resource
from generators.readback.k3s import K3sNode
from generators.readback.rendered import Rendered
from generators.readback.selectors import SelectorError, selector_matches
from generators.readback.services import Service

LBIPAM_IPS = "lbipam.cilium.io/ips"
CILIUM_FIDELITY = "`lab.fidelity: cilium` (Cilium's own code decides)"


class OutsideTwin(InputError):
    """Files that use something the twin does not decide as Cilium does (exit 2): use the Cilium fidelity."""


def _unparseable_pins(services: list[Service]) -> list[str]:
    out = []
    for svc in services:
        for vip in svc.vips:
            try:
                ipaddress.ip_address(vip.address)
            except ValueError:
                out.append(f"Service {svc.key}: {vip.path} = {vip.address!r} is not an address; Cilium's LB-IPAM "
                           "then allocates as if unpinned, from its own pool state")
    return out


def _load_balancer_classes(services: list[Service]) -> list[str]:
    return [f"Service {s.key}: loadBalancerClass {s.load_balancer_class!r}; which Services LB-IPAM and BGP serve "
            "by class is Cilium's configuration" for s in services
            if s.type == "LoadBalancer" and s.load_balancer_class and s.load_balancer_class != BGP_LB_CLASS]


def _pool_features(rendered: Rendered) -> list[str]:
    return [f"CiliumLoadBalancerIPPool {pool.name}: {len(pool.blocks)} blocks; which block Cilium takes an "
            "unpinned Service's address from is its allocator's own order (not the smallest, not the first)"
            for pool in pools(rendered) if len(pool.blocks) > 1]


def _cluster_config_overlap(bgp: Bgp, nodes: list[K3sNode]) -> list[str]:
    out = []
    for node in nodes:
        selecting = []
        for cc in bgp.cluster_configs:
            try:
                if cc.node_selector is None or selector_matches(cc.node_selector, node.labels):
                    selecting.append(cc.name)
            except SelectorError:
                continue
        if len(selecting) > 1:
            out.append(f"node {node.name} is selected by {len(selecting)} CiliumBGPClusterConfigs "
                       f"({', '.join(selecting)})")
    return out


def _aggregation(rendered: Rendered) -> list[str]:
    out = []
    for doc in rendered.of_kind("CiliumBGPAdvertisement"):
        for i, entry in enumerate(doc.spec.get("advertisements") or []):
            service = (entry or {}).get("service") or {}
            for key in ("aggregationLengthIPv4", "aggregationLengthIPv6"):
                if key in service:
                    out.append(f"CiliumBGPAdvertisement {doc.name}: spec.advertisements[{i}].service.{key}")
    return out


def _envoy_features(rendered: Rendered) -> list[str]:
    out = []
    for config in envoy_configs(rendered):
        if config.doc.spec.get("nodeSelector") is not None:
            out.append(f"{config.doc.kind} {config.name}: nodeSelector (Cilium applies it to the nodes' labels "
                       "as its agent sees them)")
        for index, raw in enumerate(config.doc.spec.get("resources") or []):
            if isinstance(raw, dict) and validate_resource(raw) is None and _envoy_would_reject(raw):
                out.append(f"{config.doc.kind} {config.name}: spec.resources[{index}] fails Envoy's own validation "
                           "(a health check without healthy_threshold/unhealthy_threshold/timeout/interval)")
    return out


REQUIRED_HEALTH_CHECK = ("timeout", "interval", "unhealthy_threshold", "healthy_threshold")


def _envoy_would_reject(resource: dict) -> bool:
    """Envoy's proto validation of a cluster's health checks (required fields), which drops the whole CCEC."""
    for hc in resource.get("health_checks", resource.get("healthChecks")) or []:
        if not isinstance(hc, dict):
            continue
        for field_name in REQUIRED_HEALTH_CHECK:
            camel = "".join([field_name.split("_")[0]] + [w.title() for w in field_name.split("_")[1:]])
            if field_name not in hc and camel not in hc:
                return True
    return False


def outside_twin(rendered: Rendered, services: list[Service], nodes: list[K3sNode]) -> list[str]:
    """Why the twin must not decide these files (empty: it decides as Cilium does, per the corpus)."""
    return (_unparseable_pins(services) + _load_balancer_classes(services) + _pool_features(rendered)
            + _cluster_config_overlap(Bgp.read(rendered), nodes) + _aggregation(rendered)
            + _envoy_features(rendered))


def refuse_outside(rendered: Rendered, services: list[Service], nodes: list[K3sNode]) -> None:
    reasons = outside_twin(rendered, services, nodes)
    if reasons:
        raise OutsideTwin(f"{rendered.root}: the twin does not decide these files as Cilium does "
                          f"(docs/DIFFERENTIAL.md); rehearse them with {CILIUM_FIDELITY}", reasons)
