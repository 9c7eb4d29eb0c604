"""What a lab must show, derived from its RENDERED files through the twin's Cilium semantics.

The design intends every pinned LoadBalancer VIP to reach the gateway; which nodes actually
advertise it (and why not, when none does) is what Cilium would do with the rendered resources.
"""

from __future__ import annotations

from ..checks.verify import Expectation
from ..twin import TwinPlan
from .access import LabAccess
from .kinds.twin import twin_plan


def _why_not(plan: TwinPlan, service: str) -> str:
    lines = plan.services[service].lines()[1:]
    return "; ".join(line.strip() for line in lines) or plan.services[service].ip_reason


def expectation_from_plan(
    plan: TwinPlan, vips_by_role: dict[str, str], apiserver_port: int, dns_name: str
) -> Expectation:
    role_of = {vip: role for role, vip in vips_by_role.items()}
    intended: dict[str, str] = {}
    not_advertised: dict[str, str] = {}
    for key, svc in sorted(plan.services.items()):
        if svc.type != "LoadBalancer":
            continue
        for ip in svc.ips:
            intended[ip] = role_of.get(ip, key)
            if not svc.advertising_nodes():
                not_advertised[ip] = f"Service {key}: {_why_not(plan, key)}"
    for role, vip in vips_by_role.items():  # a pinned VIP that got no IP at all is a failure too
        if vip not in intended:
            intended[vip] = role
            not_advertised[vip] = "no LoadBalancer Service holds this VIP (LB-IPAM did not assign it)"
    node_names = {n.ip: n.name for n in plan.nodes.values()}
    return Expectation(
        peers=frozenset(n.ip for n in plan.nodes.values() if n.bgp_selected),
        next_hops={vip: frozenset(hops) for vip, hops in plan.expected_next_hops.items()},
        intended=intended,
        not_advertised=not_advertised,
        node_names=node_names,
        apiserver_vip=vips_by_role["apiserver"],
        apiserver_port=apiserver_port,
        dns_name=dns_name,
        traefik_vip=vips_by_role["traefik"],
    )


def expectation_for(lab: LabAccess) -> Expectation:
    return expectation_from_plan(twin_plan(lab.paths, lab.model), lab.vips, lab.apiserver_port, lab.dns_name)
