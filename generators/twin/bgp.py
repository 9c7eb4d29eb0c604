"""Cilium 1.19's BGP control plane (v2 resources) on rendered files: which nodes run BGP, with which peers
and settings, and which Service VIPs each node advertises to each peer -- with the reason when not.

Semantics reproduced (Cilium ``pkg/bgpv1``, read at 1.19):
- ``CiliumBGPClusterConfig.spec.nodeSelector`` absent or empty selects every node; a node selected by
  two cluster configs gets none (conflict).
- A peer whose ``peerConfigRef`` is absent uses the defaulted peer config (and advertises nothing); a
  ref to a missing ``CiliumBGPPeerConfig`` skips the peer; a peer without ``peerAddress`` is skipped.
- Peer config defaults: connect-retry 120, hold 90, keepalive 30, GR off with restart 120, eBGP
  multihop 1, peer port 179, families ipv6-unicast + ipv4-unicast (without advertisements).
- GR on: restart-time, notification (N-bit), local-restarting, per-family GR. eBGP multihop only when
  the peer AS differs and TTL > 1. Idle-hold after reset 5 s. Instance ``localPort`` unset: no listener.
- A family's ``advertisements`` selector absent selects no CiliumBGPAdvertisement; an advertisement
  entry without ``selector`` selects no Service. The Service label set includes
  ``io.kubernetes.service.{name,namespace}``. Only ``type: LoadBalancer`` Services with no or the
  ``io.cilium/bgp-control-plane`` loadBalancerClass; ``externalTrafficPolicy: Local`` only on nodes with
  a local (non-terminating) endpoint, unless a CiliumEnvoyConfig redirects the Service to Envoy: the
  redirect counts as local, so every node advertises it (the seed's headline case; its Envoy then has only
  the local endpoints, none on a node without one). Paths are /32, origin IGP, next-hop self.
- Out of scope (the twin refuses these files, ``generators/twin/scope.py``): a node selected by two
  cluster configs, aggregation, and what the differential corpus found the twin got wrong.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from generators.readback.cilium import (
    BGP_LB_CLASS,
    CRD_CONNECT_RETRY,
    CRD_EBGP_MULTIHOP,
    CRD_HOLD,
    CRD_KEEPALIVE,
    CRD_PEER_PORT,
    CRD_RESTART,
    AdvertEntry,
    Bgp,
    ClusterConfig,
    Family,
    Peer,
)
from generators.readback.cilium import (
    Advertisement as AdvertisementDoc,
)
from generators.readback.k3s import K3sNode
from generators.readback.selectors import SelectorError, describe_selector, selector_matches
from generators.readback.services import Service

from .lbipam import Allocation

IDLE_HOLD_AFTER_RESET = 5


@dataclass
class PeerPlan:
    name: str
    address: str | None
    asn: int
    config_ref: str | None
    configured: bool = True
    reason: str = ""  # why not configured
    connect_retry: int = CRD_CONNECT_RETRY
    hold_time: int = CRD_HOLD
    keepalive: int = CRD_KEEPALIVE
    gr_enabled: bool = False
    gr_restart_time: int = CRD_RESTART
    ebgp_multihop_ttl: int = CRD_EBGP_MULTIHOP  # as configured
    peer_port: int = CRD_PEER_PORT
    families: tuple[Family, ...] = ()
    uses_default_config: bool = False

    def multihop_enabled(self, local_asn: int) -> bool:
        return self.asn != local_asn and self.ebgp_multihop_ttl > 1


@dataclass
class InstancePlan:
    name: str
    local_asn: int
    router_id: str
    listen_port: int  # -1: no listener (Cilium's default when localPort is unset)
    peers: list[PeerPlan] = field(default_factory=list)
    cluster_config: str = ""

    def configured_peers(self) -> list[PeerPlan]:
        return [p for p in self.peers if p.configured]


@dataclass
class NodeBgp:
    node: str
    selected: bool
    reason: str  # why (not) selected
    instances: list[InstancePlan] = field(default_factory=list)


@dataclass(frozen=True)
class Advertisement:
    """One VIP advertised by one node's instance to one peer."""

    node: str
    instance: str
    peer: str
    peer_address: str
    prefix: str  # a.b.c.d/32
    service: str
    advertisement: str  # CiliumBGPAdvertisement name


# ----------------------------------------------------------------- node selection and peers

def _or(value: int | None, default: int) -> int:
    """A field Cilium's CRD would reject (not a number, 0) falls back to the default here."""
    return value if value else default


def peer_from_config(peer: Peer, bgp: Bgp) -> PeerPlan:
    plan = PeerPlan(name=peer.name, address=peer.address, asn=peer.asn or 0, config_ref=peer.config_ref)
    if not plan.address:
        plan.configured, plan.reason = False, f"peer {peer.name} has no peerAddress (auto-discovery is not modelled)"
        return plan
    config = bgp.peer_config(peer)
    if config is None:
        plan.configured = False
        plan.reason = (f"peer {peer.name} references CiliumBGPPeerConfig {peer.config_ref}, which does not exist: "
                       f"Cilium skips the peer (no session)")
        return plan
    plan.uses_default_config = config.doc is None
    plan.connect_retry = _or(config.connect_retry, CRD_CONNECT_RETRY)
    plan.hold_time = _or(config.hold, CRD_HOLD)
    plan.keepalive = _or(config.keepalive, CRD_KEEPALIVE)
    plan.gr_enabled = config.gr_enabled
    plan.gr_restart_time = _or(config.restart_time, CRD_RESTART)
    plan.ebgp_multihop_ttl = _or(config.ebgp_multihop, CRD_EBGP_MULTIHOP)
    plan.peer_port = _or(config.peer_port, CRD_PEER_PORT)
    plan.families = config.families
    return plan


def _selects_node(cc: ClusterConfig, node: K3sNode) -> bool:
    return selector_matches(cc.node_selector or {}, node.labels)  # absent/empty: every node


def plan_node(node: K3sNode, bgp: Bgp) -> NodeBgp:
    cluster_configs = bgp.cluster_configs
    try:
        selecting = [d for d in cluster_configs if _selects_node(d, node)]
    except SelectorError as exc:
        return NodeBgp(node.name, False, f"a CiliumBGPClusterConfig nodeSelector is invalid: {exc}")
    if not cluster_configs:
        return NodeBgp(node.name, False, "no CiliumBGPClusterConfig in the rendered files")
    if not selecting:
        why = "; ".join(f"CiliumBGPClusterConfig {d.name} selects {describe_selector(d.node_selector)}"
                        for d in cluster_configs)
        return NodeBgp(node.name, False, f"node {node.name} labels {_show_labels(node)} are not selected: {why}")
    if len(selecting) > 1:
        names = ", ".join(d.name for d in selecting)
        return NodeBgp(node.name, False, f"node {node.name} is selected by several CiliumBGPClusterConfigs ({names}); "
                                         f"Cilium reports a conflict and configures none")
    cc = selecting[0]
    plan = NodeBgp(node.name, True, f"selected by CiliumBGPClusterConfig {cc.name} "
                                    f"({describe_selector(cc.node_selector)})")
    for inst in cc.instances:
        if inst.local_asn is None:
            plan.reason += f"; instance {inst.name} has no localASN and is not started"
            continue
        instance = InstancePlan(name=inst.name, local_asn=inst.local_asn, router_id=str(node.ip),
                                listen_port=inst.local_port or -1, cluster_config=cc.name)
        instance.peers = [peer_from_config(p, bgp) for p in inst.peers]
        plan.instances.append(instance)
    return plan


def _show_labels(node: K3sNode) -> str:
    user = {k: node.labels[k] for k in node.labels if not k.startswith(("kubernetes.io/", "beta.kubernetes.io/"))}
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(user.items())) + "}"


def plan_bgp(bgp: Bgp, nodes: list[K3sNode]) -> dict[str, NodeBgp]:
    return {n.name: plan_node(n, bgp) for n in nodes}


# ----------------------------------------------------------------- advertisements

def _labels_text(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(labels.items())) + "}"


@dataclass
class PeerVerdict:
    peer: str
    advertised: bool
    reasons: list[str] = field(default_factory=list)
    advertisements: list[str] = field(default_factory=list)


def _family_adverts(family: Family, adverts: list[AdvertisementDoc]) -> list[AdvertisementDoc]:
    if family.advertisements is None:
        return []
    return [a for a in adverts if selector_matches(family.advertisements, a.labels)]


def _entry_verdict(svc: Service, entry: AdvertEntry, advert: AdvertisementDoc) -> str | None:
    """None when this advertisement entry selects the Service's LoadBalancerIP; else why not."""
    addresses = list(entry.service_addresses)
    if "LoadBalancerIP" not in addresses:
        return (f"CiliumBGPAdvertisement {advert.name} Service entry advertises {addresses or 'no addresses'}, "
                f"not LoadBalancerIP")
    selector = entry.selector
    if selector is None:
        return (f"CiliumBGPAdvertisement {advert.name} Service entry has no selector: Cilium advertises no Service "
                f"for it")
    if not selector_matches(selector, svc.bgp_labels()):
        return (f"Service {svc.key} labels {_labels_text(svc.labels)} do not match CiliumBGPAdvertisement "
                f"{advert.name} service selector {describe_selector(selector)}")
    return None


def peer_verdict(svc: Service, ip: str, node: str, peer: PeerPlan, adverts: list[AdvertisementDoc]) -> PeerVerdict:
    verdict = PeerVerdict(peer=peer.name, advertised=False)
    if peer.uses_default_config:
        verdict.reasons.append(f"peer {peer.name} has no peerConfigRef: the default peer config selects no "
                               f"CiliumBGPAdvertisement")
        return verdict
    version = ipaddress.ip_address(ip).version
    families = [f for f in peer.families if f.afi == f"ipv{version}" and f.safi == "unicast"]
    if not families:
        shown = ", ".join(f.name for f in peer.families)
        verdict.reasons.append(f"CiliumBGPPeerConfig {peer.config_ref} has no ipv{version}/unicast family ({shown})")
        return verdict
    for family in families:
        if family.advertisements is None:
            verdict.reasons.append(f"CiliumBGPPeerConfig {peer.config_ref} family {family.name} has no "
                                   f"advertisements selector: it advertises nothing")
            continue
        chosen = _family_adverts(family, adverts)
        if not chosen:
            verdict.reasons.append(
                f"CiliumBGPPeerConfig {peer.config_ref} family {family.name} advertisements selector "
                f"{describe_selector(family.advertisements)} matches no CiliumBGPAdvertisement (labels: "
                + ("; ".join(f"{a.name} {_labels_text(a.labels)}" for a in adverts) or "none exist") + ")")
            continue
        for advert in chosen:
            entries = [e for e in advert.entries if e.type == "Service"]
            if not entries:
                verdict.reasons.append(f"CiliumBGPAdvertisement {advert.name} has no advertisementType Service entry")
            for entry in entries:
                why = _entry_verdict(svc, entry, advert)
                if why is None:
                    verdict.advertised = True
                    verdict.advertisements.append(advert.name)
                else:
                    verdict.reasons.append(why)
    if verdict.advertised:
        verdict.reasons = []
    return verdict


def service_precheck(svc: Service, allocation: Allocation, node: str, redirected: bool = False) -> str | None:
    """Reasons that hold before any selector is looked at (per node for eTP Local). ``redirected``: a CCEC
    sends the Service to Envoy, which Cilium counts as a local backend on every node."""
    if svc.type != "LoadBalancer":
        return f"Service {svc.key} is type {svc.type}; only LoadBalancer IPs are advertised"
    if svc.load_balancer_class is not None and svc.load_balancer_class != BGP_LB_CLASS:
        return f"Service {svc.key} has loadBalancerClass {svc.load_balancer_class}; BGP advertises only " \
               f"unset or {BGP_LB_CLASS}"
    if not allocation.ok:
        return f"Service {svc.key} has no LoadBalancer IP: {allocation.reason}"
    if svc.external_traffic_policy == "Local" and not svc.has_local_endpoint(node) and not redirected:
        return (f"Service {svc.key} has externalTrafficPolicy Local and no endpoint on node {node}: Cilium "
                f"withdraws it there")
    return None


def evaluate_advertisements(resources: Bgp, bgp: dict[str, NodeBgp], services: list[Service],
                            allocations: dict[str, Allocation], redirected: frozenset[str] = frozenset()
                            ) -> tuple[list[Advertisement], dict[str, dict[str, list[str]]]]:
    """Every (node, peer, VIP) advertisement, and per Service and node the reasons when it is not advertised.
    ``redirected``: keys of the Services a CCEC sends to Envoy."""
    adverts = resources.advertisements
    found: list[Advertisement] = []
    why_not: dict[str, dict[str, list[str]]] = {}
    for svc in services:
        alloc = allocations[svc.key]
        per_node: dict[str, list[str]] = {}
        for node, plan in bgp.items():
            reasons: list[str] = []
            if not plan.selected:
                reasons.append(f"node {node} runs no BGP: {plan.reason}")
            pre = service_precheck(svc, alloc, node, svc.key in redirected)
            if plan.selected and pre:
                reasons.append(pre)
            advertised = False
            if plan.selected and not pre:
                for inst in plan.instances:
                    for peer in inst.peers:
                        if not peer.configured:
                            reasons.append(peer.reason)
                            continue
                        for ip in alloc.ips:
                            try:
                                verdict = peer_verdict(svc, ip, node, peer, adverts)
                            except SelectorError as exc:
                                reasons.append(f"peer {peer.name}: a selector on the way is invalid, Cilium "
                                               f"rejects it: {exc}")
                                continue
                            if verdict.advertised:
                                advertised = True
                                found.append(Advertisement(node, inst.name, peer.name, str(peer.address),
                                                           f"{ip}/{ipaddress.ip_address(ip).max_prefixlen}",
                                                           svc.key, verdict.advertisements[0]))
                            else:
                                reasons.extend(f"peer {peer.name}: {r}" for r in verdict.reasons)
                if not plan.instances:
                    reasons.append(f"node {node} has no BGP instance")
            per_node[node] = [] if advertised else list(dict.fromkeys(reasons))
        why_not[svc.key] = per_node
    return found, why_not
