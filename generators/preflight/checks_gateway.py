"""The gateway's frr.conf against the cluster's Cilium BGP resources and k3s node set."""

from __future__ import annotations

from dataclasses import dataclass

from generators.readback.cilium import ClusterConfig, Peer
from generators.readback.cilium import Instance as CiliumInstance
from generators.readback.frrconf import Neighbor, RouterBgp
from generators.readback.rendered import Doc
from generators.readback.values import as_int

from .context import EBGP_REQUIRES_POLICY_SINCE, FRR_CONF, Context, Node, selector_state


@dataclass
class Instance:
    doc: Doc
    instance: CiliumInstance
    selector: object

    @property
    def local_asn(self) -> int | None:
        return self.instance.local_asn

    @property
    def peers(self) -> tuple[Peer, ...]:
        return self.instance.peers

    def selects(self, node: Node) -> bool:
        return self.selector is None or selector_state(self.selector, node.labels) is True


def _instances(ctx: Context) -> list[Instance]:
    out = []
    for doc in ctx.of_kind("CiliumBGPClusterConfig"):
        config = ClusterConfig.from_doc(doc)
        out += [Instance(doc, inst, doc.spec.get("nodeSelector")) for inst in config.instances]
    return out


def _line(number: int, text: str) -> str:
    return f"line {number}: {text}"


def _node_asns(ctx: Context, instances: list[Instance]) -> dict[str, set[int]]:
    """Node name -> the localASNs Cilium uses on it towards the gateway."""
    gw = ctx.gateway_address
    out: dict[str, set[int]] = {}
    for node in ctx.nodes:
        chosen = [i for i in instances if i.selects(node)]
        towards_gw = [i for i in chosen if any(p.address == gw for p in i.peers)]
        out[node.name] = {i.local_asn for i in (towards_gw or chosen) if i.local_asn is not None}
    return out


def _node_neighbors(router: RouterBgp, ctx: Context) -> dict[str, Neighbor]:
    """Node name -> its explicit FRR neighbor (dynamic listen-range neighbors are not listed)."""
    by_ip = {n.name: n for n in router.peers() if n.is_address}
    return {node.name: by_ip[node.ip] for node in ctx.nodes if node.ip in by_ip}


def check_router_present(ctx: Context) -> bool:
    if ctx.frr is None:
        return False
    if ctx.router is None:
        ctx.add(
            "GW-NO-ROUTER-BGP",
            FRR_CONF,
            "-",
            "-",
            "frr.conf has no `router bgp ASN` block for the default VRF: the gateway never peers with the nodes.",
            "add the seed's router bgp block (router bgp, router-id, neighbors, address-family ipv4 unicast)",
        )
        return False
    return True


def _remote_as_problem(remote_as: str, router_asn: str, local_asns: set[int]) -> str | None:
    if remote_as == "external":
        return "is `external`, but Cilium uses the gateway's own ASN" if local_asns == {as_int(router_asn)} else None
    if remote_as == "internal":
        return (
            None if local_asns == {as_int(router_asn)} else "is `internal` (the gateway's ASN), but Cilium uses another"
        )
    if as_int(remote_as) not in local_asns:
        return f"is {remote_as}, but Cilium's localASN is {', '.join(map(str, sorted(local_asns)))}"
    return None


def check_remote_as(ctx: Context, router: RouterBgp, instances: list[Instance]) -> None:
    asns = _node_asns(ctx, instances)
    problems: dict[int, tuple[str, list[str], str]] = {}
    for name, neighbor in _node_neighbors(router, ctx).items():
        remote = router.effective_remote_as(neighbor)
        if not asns.get(name):
            continue
        if remote is None:
            key, text, why = (
                neighbor.defined_line,
                f"neighbor {neighbor.name}",
                "is not set (no remote-as on the neighbor or its peer-group)",
            )
        else:
            problem = _remote_as_problem(remote.value, router.asn, asns[name])
            if problem is None:
                continue
            key, text, why = remote.line, remote.text, problem
        problems.setdefault(key, (text, [], why))[1].append(name)
    for number, (text, nodes, why) in sorted(problems.items()):
        ctx.add(
            "GW-REMOTE-AS",
            FRR_CONF,
            router.title,
            _line(number, text),
            f"the remote-as the gateway expects from {', '.join(sorted(nodes))} {why}: FRR rejects their OPEN "
            "(NOTIFICATION Bad Peer AS) and the sessions never establish.",
            "make `neighbor <group> remote-as` equal the localASN of the CiliumBGPClusterConfig",
        )


def check_peer_asn_and_address(ctx: Context, router: RouterBgp, instances: list[Instance]) -> None:
    gw = ctx.gateway_address
    for inst in instances:
        for peer in inst.peers:
            if peer.address != gw or gw is None:
                continue
            asn = peer.asn
            if asn and str(asn) != router.asn:
                ctx.add(
                    "GW-PEER-ASN",
                    inst.doc.file,
                    inst.doc.ref,
                    f"{peer.path}.peerASN",
                    f"peerASN is {asn}, but the gateway runs `router bgp {router.asn}` (frr.conf line "
                    f"{router.line}): GoBGP rejects the gateway's OPEN (Bad Peer AS) on every node.",
                    f"set peerASN: {router.asn}",
                )
        if gw is None or not inst.peers:
            continue
        if any(p.address == gw or p.auto_discovery for p in inst.peers):
            continue
        for peer in inst.peers:
            ctx.add(
                "GW-PEER-ADDRESS",
                inst.doc.file,
                inst.doc.ref,
                f"{peer.path}.peerAddress",
                f"peerAddress is {peer.address!r}, but the gateway's address (bgp router-id, frr.conf "
                f"line {router.router_id.line if router.router_id else '?'}) is {gw}: the nodes connect to an "
                "address where no BGP speaker for them listens; the sessions stay Active.",
                f'set peerAddress: "{gw}"',
            )


def check_neighbor_set(ctx: Context, router: RouterBgp) -> None:
    if not ctx.node_ips_complete:
        return
    explicit = {n.name for n in router.peers() if n.is_address}
    group = next((n.peer_group.value for n in router.peers() if n.peer_group and n.name in explicit), "<group>")
    for node in ctx.nodes:
        if node.ip in explicit or router.listen_range_for(node.ip or "") is not None:
            continue
        ctx.add(
            "GW-NEIGHBOR-MISSING",
            FRR_CONF,
            router.title,
            _line(router.line, router.title),
            f"node {node.name} ({node.ip}) is not a neighbor (nor in a bgp listen range): FRR refuses its "
            "session, and the VIPs have no next-hop through it.",
            f"add `neighbor {node.ip} peer-group {group}` under {router.title}",
        )
    node_ips = {n.ip for n in ctx.nodes}
    node_neighbors = [n for n in router.peers() if n.name in node_ips]
    groups = {n.peer_group.value for n in node_neighbors if n.peer_group}
    asns = {r.value for r in (router.effective_remote_as(n) for n in node_neighbors) if r is not None}
    for neighbor in router.peers():
        if not neighbor.is_address or neighbor.name in node_ips:
            continue
        remote = router.effective_remote_as(neighbor)
        if (neighbor.peer_group and neighbor.peer_group.value in groups) or (remote and remote.value in asns):
            ctx.add(
                "GW-NEIGHBOR-EXTRA",
                FRR_CONF,
                router.title,
                _line(neighbor.defined_line, f"neighbor {neighbor.name}"),
                f"neighbor {neighbor.name} is configured like the nodes (same peer-group or remote-as) but is "
                "no node of the k3s configs: its session stays Active forever (harmless for routing, noise "
                "in `show bgp summary`, and a stale entry if a node was removed).",
                f"remove `neighbor {neighbor.name}` if that node is gone",
            )


def _is_ebgp(router: RouterBgp, neighbor: Neighbor) -> bool:
    remote = router.effective_remote_as(neighbor)
    if remote is None:
        return False
    if remote.value in ("external", "internal"):
        return remote.value == "external"
    return remote.value != router.asn


def check_ebgp_policy(ctx: Context, router: RouterBgp) -> None:
    if not router.ebgp_requires_policy or ctx.frr_at_least(EBGP_REQUIRES_POLICY_SINCE) is False:
        return
    blocked = [
        n.name
        for n in _node_neighbors(router, ctx).values()
        if _is_ebgp(router, n) and router.is_activated(n) and router.route_map(n, "in") is None
    ]
    if not blocked:
        return
    ctx.add(
        "GW-EBGP-POLICY",
        FRR_CONF,
        router.title,
        _line(router.line, router.title),
        f"eBGP neighbors {', '.join(blocked)} have no inbound route-map and `bgp ebgp-requires-policy` is on "
        "(FRR's default since 7.4): FRR accepts no route from them (peer state 'Policy'); sessions are up, "
        "the VIPs never appear.",
        f"add ` no bgp ebgp-requires-policy` under {router.title} (the seed's way), or an inbound route-map",
    )


def check_maximum_paths(ctx: Context, router: RouterBgp) -> None:
    family = router.address_family()
    if family is None or len(ctx.nodes) < 2:
        return
    neighbors = list(_node_neighbors(router, ctx).values())
    ebgp = any(_is_ebgp(router, n) for n in neighbors)
    ibgp = any(not _is_ebgp(router, n) for n in neighbors)
    for setting, applies, kind in ((family.maximum_paths, ebgp, "eBGP"), (family.maximum_paths_ibgp, ibgp, "iBGP")):
        if setting is None or not applies or as_int(setting.value) != 1:
            continue
        ctx.add(
            "GW-MAXPATHS",
            FRR_CONF,
            router.title,
            _line(setting.line, setting.text),
            f"`{setting.text}` limits {kind} multipath to one path: every VIP gets a single next-hop instead "
            f"of one per node ({len(ctx.nodes)}), so there is no ECMP and a lost node costs a failover.",
            "delete the line (FRR's default is its compile-time limit, 256 on Debian) or set it to at least "
            f"{len(ctx.nodes)}",
        )


def check_multipath_relax(ctx: Context, router: RouterBgp, instances: list[Instance]) -> None:
    if router.multipath_relax is not None:
        return
    remotes = [router.effective_remote_as(n) for n in _node_neighbors(router, ctx).values()]
    frr_asns = {
        remote.value
        for remote in remotes
        if remote is not None
    }
    cilium_asns = set().union(*_node_asns(ctx, instances).values()) if ctx.nodes else set()
    # The AS path a node's route carries starts with Cilium's localASN; FRR's remote-as only matters
    # when the files hold no ClusterConfig (a mismatch between the two is GW-REMOTE-AS's business).
    asns = {str(a) for a in cilium_asns} or {a for a in frr_asns if a not in ("external", "internal")}
    if len(asns) < 2:
        return
    ctx.add(
        "GW-MULTIPATH-RELAX",
        FRR_CONF,
        router.title,
        _line(router.line, router.title),
        f"the nodes use different ASNs ({', '.join(sorted(asns))}) and there is no "
        "`bgp bestpath as-path multipath-relax`: FRR only multipaths routes with identical AS paths, so each "
        "VIP gets the next-hops of one ASN only, not one per node.",
        f"add ` bgp bestpath as-path multipath-relax` under {router.title}, or give all nodes one ASN",
    )


def check_activation(ctx: Context, router: RouterBgp) -> None:
    inactive: dict[str, list[str]] = {}
    for name, neighbor in _node_neighbors(router, ctx).items():
        if not router.is_activated(neighbor):
            key = neighbor.peer_group.value if neighbor.peer_group else neighbor.name
            inactive.setdefault(key, []).append(name)
    family = router.address_family()
    where = (
        _line(family.line, "address-family ipv4 unicast")
        if family and family.line
        else _line(router.line, router.title)
    )
    for key, nodes in sorted(inactive.items()):
        ctx.add(
            "GW-AF-NOT-ACTIVATED",
            FRR_CONF,
            router.title,
            where,
            f"ipv4 unicast is not activated for {key} (nodes {', '.join(sorted(nodes))})"
            + (" and `no bgp default ipv4-unicast` is set" if not router.default_ipv4_unicast else "")
            + ": the sessions establish but exchange no IPv4 route, so no VIP reaches the gateway.",
            f"add ` neighbor {key} activate` inside address-family ipv4 unicast",
        )


def run(ctx: Context) -> None:
    if not check_router_present(ctx):
        return
    router = ctx.router
    assert router is not None
    instances = _instances(ctx)
    check_remote_as(ctx, router, instances)
    check_peer_asn_and_address(ctx, router, instances)
    check_neighbor_set(ctx, router)
    check_ebgp_policy(ctx, router)
    check_maximum_paths(ctx, router)
    check_multipath_relax(ctx, router, instances)
    check_activation(ctx, router)
