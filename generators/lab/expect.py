"""What a lab must show, and verify's full run on a lab of either fidelity.

The design intends every pinned LoadBalancer VIP to reach the gateway. Which nodes advertise it is
Cilium's decision: on the ``cilium`` fidelity Cilium's own code makes it and each node's ``/state`` says
what it advertises; on the ``twin`` fidelity the twin's Python reproduction of it decides, from the
rendered files.
"""

from __future__ import annotations

import json

from kubernetes import client as k8s

from .. import gobuild, preflight
from ..checks.cluster import ClusterFacts, run_cluster_checks
from ..checks.verify import CheckResult, Expectation, collect, run_checks
from ..errors import LabError, LabToolError
from ..readback.cilium import Bgp
from ..readback.ciliumstate import NodeState
from ..readback.selectors import selector_matches
from ..twin import TwinPlan
from .access import LabAccess
from .kinds.cilium import APISERVER_PORT, CiliumKind, LabCluster
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


def expectation_from_states(states: dict[str, NodeState], cluster: LabCluster, vips_by_role: dict[str, str],
                            apiserver_port: int, dns_name: str) -> Expectation:
    """What the gateway must show given what Cilium's code decided on each node (its /state)."""
    ip_of = {n.name: str(n.ip) for n in cluster.nodes}
    role_of = {vip: role for role, vip in vips_by_role.items()}
    pinned = {v.ipv4: s.key for s in cluster.services if s.type == "LoadBalancer" for v in s.vips if v.ipv4}
    seen = {f.address: f.service for st in states.values() for f in st.load_balancer_frontends()
            if ":" not in f.address}
    intended = {vip: role_of.get(vip, key) for vip, key in sorted({**seen, **pinned}.items())}
    for role, vip in vips_by_role.items():
        intended.setdefault(vip, role)
    next_hops = {vip: frozenset(ip_of[n] for n, st in states.items() if f"{vip}/32" in st.advertised())
                 for vip in intended}
    not_advertised = {}
    for vip, hops in next_hops.items():
        if hops:
            continue
        if vip not in seen:
            not_advertised[vip] = (f"no LoadBalancer Service holds {vip}: Cilium's LB-IPAM did not assign it "
                                   f"(lbipam:{pinned.get(vip, '?')} says why)")
        else:
            proven = [f"{f.id}: {f.message}" for f in preflight.run(cluster.rendered).findings
                      if f.document == f"Service/{seen[vip]}" and f.id.startswith(("BGP-", "CCEC-"))]
            not_advertised[vip] = (f"Cilium advertises the Service {seen[vip]} from no node; the files say why: "
                                   + ("; ".join(proven) if proven else "no preflight finding explains it (see the "
                                      "CiliumBGPAdvertisement selectors and externalTrafficPolicy)"))
    return Expectation(
        peers=frozenset(ip_of[n] for n, st in states.items() if st.peers),
        next_hops=next_hops, intended=intended, not_advertised=not_advertised,
        node_names={ip: n for n, ip in ip_of.items()}, apiserver_vip=vips_by_role["apiserver"],
        apiserver_port=apiserver_port, dns_name=dns_name, traefik_vip=vips_by_role["traefik"],
    )


def cilium_states(lab: LabAccess) -> dict[str, NodeState]:
    kind = CiliumKind()
    return {n.name: kind.node_state(lab, n.name) for n in lab.model.nodes}


def expectation_for(lab: LabAccess) -> Expectation:
    if lab.fidelity == "cilium":
        cluster = LabCluster.read(lab.paths.rendered)
        return expectation_from_states(cilium_states(lab), cluster, lab.vips, lab.apiserver_port, lab.dns_name)
    return expectation_from_plan(twin_plan(lab.paths, lab.model), lab.vips, lab.apiserver_port, lab.dns_name)


# A stdlib-only probe run inside `client`: GET /version through each URL, TLS verified against the lab CA.
API_PROBE = r"""
import json, ssl, sys, urllib.request
ca, urls = sys.argv[1], sys.argv[2:]
ctx = ssl.create_default_context(cafile=ca)
out = []
for url in urls:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
            out.append({"url": url, "ok": True, "status": r.status, "version": json.load(r).get("gitVersion")})
    except Exception as e:
        out.append({"url": url, "ok": False, "error": f"{type(e).__name__}: {e}"})
print(json.dumps(out))
"""


def api_probes(lab: LabAccess) -> list[dict]:
    urls = [f"https://{host}:{lab.apiserver_port}/version" for host in (lab.vips["apiserver"], lab.dns_name)]
    res = lab.exec(lab.client, ["python3", "-c", API_PROBE, lab.ca_path_in_client, *urls], timeout=30)
    if res.exit_code != 0:
        return [{"url": u, "ok": False, "error": f"probe exited {res.exit_code}: {res.stderr.strip()[-200:]}"}
                for u in urls]
    return list(json.loads(res.stdout))


def _read_cluster(api: object, cluster: LabCluster) -> tuple[dict, dict, dict]:
    core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
    services = {}
    for svc in cluster.services:
        if svc.type != "LoadBalancer":
            continue
        try:
            live = core.read_namespaced_service(svc.name, svc.namespace)
            ingress = [i.ip for i in (live.status.load_balancer.ingress or [])]
            conditions = [{"type": c.type, "status": c.status, "message": c.message}
                          for c in (live.status.conditions or [])]
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise
            ingress, conditions = [], [{"type": "Missing", "status": "404", "message": "the Service does not exist"}]
        services[svc.key] = {"pinned": [v.address for v in svc.vips], "ingress": ingress, "conditions": conditions}
    configs = custom.list_cluster_custom_object("cilium.io", "v2", "ciliumbgpnodeconfigs")
    pools = custom.list_cluster_custom_object("cilium.io", "v2", "ciliumloadbalancerippools")
    return services, configs, pools


def collect_cluster(lab: LabAccess, states: dict[str, NodeState], cluster: LabCluster) -> ClusterFacts:
    """The cluster's objects, read as a user would: through the apiserver VIP, else through each node."""
    servers = [lab.vips["apiserver"], *(str(n.ip) for n in cluster.nodes)]
    tried = []
    for host in servers:
        try:
            with lab.kube(f"https://{host}:{APISERVER_PORT}") as api:
                services, configs, pools = _read_cluster(api, cluster)
            break
        except (k8s.ApiException, LabToolError) as exc:  # a restarting apiserver (429), an unreachable VIP
            tried.append(f"{host}: {getattr(exc, 'status', '')} {getattr(exc, 'reason', '') or exc}".strip())
    else:
        raise LabError("the lab's Kubernetes API answered neither through the VIP nor through any node", tried)
    resources = Bgp.read(cluster.rendered)
    selected = [n.name for n in cluster.nodes
                if any(selector_matches(cc.node_selector or {}, n.labels) for cc in resources.cluster_configs)]
    return ClusterFacts(
        api_probes=api_probes(lab), want_version="v" + gobuild.Pins.read().kubernetes, services=services,
        selected_nodes=selected, node_configs=sorted(i["metadata"]["name"] for i in configs.get("items", [])),
        pools={i["metadata"]["name"]: list((i.get("status") or {}).get("conditions") or [])
               for i in pools.get("items", [])},
        states=states)


def verify_lab(lab: LabAccess) -> list[CheckResult]:
    """Every verify check of the running lab, for its fidelity."""
    if lab.fidelity != "cilium":
        exp = expectation_for(lab)
        return run_checks(collect(lab, exp), exp)
    cluster = LabCluster.read(lab.paths.rendered)
    states = cilium_states(lab)
    exp = expectation_from_states(states, cluster, lab.vips, lab.apiserver_port, lab.dns_name)
    return run_checks(collect(lab, exp), exp) + run_cluster_checks(collect_cluster(lab, states, cluster),
                                                                    sorted(exp.intended))
