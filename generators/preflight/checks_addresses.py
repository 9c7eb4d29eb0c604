"""Addresses: pinned VIPs against pools, pools against nodes, the apiserver VIP against tls-san and its
EndpointSlice."""

from __future__ import annotations

from generators.readback.cilium import Pool, PoolBlock
from generators.readback.rendered import Doc
from generators.readback.values import as_bool, as_dict, as_ip, as_list, as_seq

from .context import DNS_ANNOTATION, SHARING_KEY, Context, Service, selector_state

APISERVER_PORT = 6443


def _blocks(pool: Doc) -> list[PoolBlock]:
    return list(Pool.from_doc(pool).blocks)


def _pool_serves(pool: Doc, svc: Service) -> bool:
    if as_bool(pool.spec.get("disabled")) is True:
        return False
    selector = pool.spec.get("serviceSelector")
    return selector is None or selector_state(selector, svc.bgp_labels()) is not False


def _allows_first_last(pool: Doc) -> bool:
    """Cilium: "Yes" or unset makes the first and last IP of each CIDR allocatable; "No" reserves them."""
    raw = pool.spec.get("allowFirstLastIPs")
    return not (raw is False or str(raw).strip().lower() == "no")


def check_vips(ctx: Context) -> None:
    pools = ctx.of_kind("CiliumLoadBalancerIPPool")
    if not pools:
        return
    seen: dict[str, Service] = {}
    for svc in ctx.services:
        if svc.type != "LoadBalancer":
            continue
        blocks = [b for p in pools if _pool_serves(p, svc) for b in _blocks(p)]
        for vip in svc.vips:
            _check_vip_in_pool(ctx, svc, vip.address, vip.path, blocks)
            _check_duplicate(ctx, svc, vip.address, vip.path, seen)


def _check_vip_in_pool(ctx: Context, svc: Service, address: str, path: str, blocks: list[PoolBlock]) -> None:
    containing = [b for b in blocks if b.contains(address)]
    if not containing:
        ranges = ", ".join(b.text for b in blocks) or "none"
        ctx.add(
            "ADDR-VIP-OUTSIDE-POOL",
            svc.file,
            svc.document,
            path,
            f"{address} is in no pool that may serve this Service (pools: {ranges}): LB-IPAM never assigns it, "
            "the Service stays <pending> and nothing is advertised.",
            "pin an address inside a pool block, or add a block that contains it",
        )
        return
    for block in containing:
        net = block.network
        if net is None or net.prefixlen >= net.max_prefixlen - 1 or _allows_first_last(block.pool):
            continue
        ip = as_ip(address)
        if ip in (net.network_address, net.broadcast_address):
            which = "network" if ip == net.network_address else "broadcast"
            ctx.add(
                "ADDR-VIP-NET-BCAST",
                svc.file,
                svc.document,
                path,
                f"{address} is the {which} address of {net} in {block.pool.ref}, which sets "
                "allowFirstLastIPs: No: LB-IPAM reserves it, so the Service stays <pending>.",
                "pin another address of the block, or drop allowFirstLastIPs: No (Cilium's default is Yes)",
            )


def _check_duplicate(ctx: Context, svc: Service, address: str, path: str, seen: dict[str, Service]) -> None:
    other = seen.get(address)
    if other is None:
        seen[address] = svc
        return
    key = svc.annotations.get(SHARING_KEY)
    if key is not None and key == other.annotations.get(SHARING_KEY):
        return
    ctx.add(
        "ADDR-VIP-DUPLICATE",
        svc.file,
        svc.document,
        path,
        f"{address} is also pinned by {other.document} ({other.file}) and the two share no "
        f"{SHARING_KEY}: LB-IPAM gives it to one of them; the other stays <pending>.",
        f"pin a different free address, or give both the same {SHARING_KEY} annotation",
    )


def check_pool_overlap(ctx: Context) -> None:
    owners = [(n.ip, f"node {n.name}") for n in ctx.nodes if n.ip]
    if ctx.gateway_address:
        owners.append((ctx.gateway_address, "the gateway (bgp router-id)"))
    for pool in ctx.of_kind("CiliumLoadBalancerIPPool"):
        for block in _blocks(pool):
            hits = [f"{who} ({ip})" for ip, who in owners if block.contains(ip)]
            if hits:
                ctx.add(
                    "ADDR-POOL-NODE-OVERLAP",
                    pool.file,
                    pool.ref,
                    block.path,
                    f"{block.text} contains {', '.join(hits)}: LB-IPAM may hand that address to a Service, "
                    "and the advertised /32 then steals traffic for the host.",
                    "shrink or move the block so that it holds no host address",
                )


def apiserver_services(ctx: Context) -> list[Service]:
    """LoadBalancer Services that expose the apiserver port (the seed's kube-apiserver-bgp)."""
    return [s for s in ctx.services if s.type == "LoadBalancer" and APISERVER_PORT in s.port_numbers()]


def check_tls_san(ctx: Context) -> None:
    for svc in apiserver_services(ctx):
        wanted = [v.address for v in svc.vips] + as_list(svc.annotations.get(DNS_ANNOTATION))
        for node in ctx.nodes:
            sans = {s.lower() for s in as_list(node.config.get("tls-san"))}
            missing = [w for w in wanted if w.lower() not in sans]
            if missing:
                ctx.add(
                    "ADDR-TLS-SAN",
                    node.file,
                    node.document,
                    "tls-san",
                    f"{', '.join(missing)} ({svc.document}) is not in tls-san: the apiserver certificate "
                    f"of {node.name} does not cover it, so kubectl through the VIP fails with an x509 error "
                    f"whenever ECMP lands on {node.name}.",
                    f"add {', '.join(missing)} to tls-san of {node.name} and restart k3s there",
                )


def _eps_for(ctx: Context, svc: Service) -> list[Doc]:
    return [
        d
        for d in ctx.of_kind("EndpointSlice")
        if (d.namespace or "default") == svc.namespace and d.labels.get("kubernetes.io/service-name") == svc.name
    ]


def check_endpoint_slices(ctx: Context) -> None:
    if not ctx.node_ips_complete:
        return
    by_ip = ctx.node_by_ip()
    names = {n.name for n in ctx.nodes}
    for svc in apiserver_services(ctx):
        for eps in _eps_for(ctx, svc):
            addresses: set[str] = set()
            for i, endpoint in enumerate(as_seq(eps.body.get("endpoints"))):
                endpoint = as_dict(endpoint)
                listed = [str(a) for a in as_list(endpoint.get("addresses"))]
                addresses.update(listed)
                _check_node_name(ctx, eps, i, endpoint, listed, by_ip, names)
            missing = sorted(set(by_ip) - addresses)
            extra = sorted(addresses - set(by_ip))
            if missing or extra:
                parts = ([f"missing node addresses {', '.join(missing)}"] if missing else []) + (
                    [f"addresses of no node {', '.join(extra)}"] if extra else []
                )
                ctx.add(
                    "ADDR-EPS-ADDRESSES",
                    eps.file,
                    eps.ref,
                    "endpoints",
                    f"{'; '.join(parts)}: Envoy balances the apiserver VIP over exactly these addresses, so a "
                    "missing node never serves it and a foreign address is a dead or wrong backend.",
                    "list one endpoint per k3s server, with its node-ip and nodeName",
                )


def _check_node_name(
    ctx: Context, eps: Doc, i: int, endpoint: dict, listed: list[str], by_ip: dict, names: set[str]
) -> None:
    node_name = endpoint.get("nodeName")
    if node_name is None:
        return
    owner = next((by_ip[a].name for a in listed if a in by_ip), None)
    if str(node_name) in names and (owner is None or owner == str(node_name)):
        return
    why = (
        f"{node_name!r} is no node name ({', '.join(sorted(names))})"
        if str(node_name) not in names
        else f"{node_name!r} does not own {', '.join(listed)} (that is {owner})"
    )
    ctx.add(
        "ADDR-EPS-NODENAME",
        eps.file,
        eps.ref,
        f"endpoints[{i}].nodeName",
        f"{why}: Cilium correlates the backend to the wrong node or to none.",
        f"set nodeName: {owner or 'the node that owns the address'}",
    )


def run(ctx: Context) -> None:
    check_vips(ctx)
    check_pool_overlap(ctx)
    check_tls_san(ctx)
    check_endpoint_slices(ctx)
