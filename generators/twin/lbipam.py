"""LB-IPAM as Cilium 1.19's operator does it, on rendered CiliumLoadBalancerIPPools and Services.

- A Service is handled when it is ``type: LoadBalancer`` and has no ``loadBalancerClass`` (LB-IPAM is
  the default IPAM) or one of Cilium's classes.
- Requested IPs (``spec.loadBalancerIP`` and the ``lbipam.cilium.io/ips`` / ``io.cilium/lb-ipam-ips``
  annotation) must lie in an enabled pool block whose ``serviceSelector`` matches the Service's labels
  plus ``io.kubernetes.service.{name,namespace}``; otherwise the Service gets no IP and the reason.
- Otherwise the first free address of the first matching range, ranges in pool/block order.
- ``allowFirstLastIPs`` unset means "Yes" in 1.19: the first and last address of a CIDR block are
  allocatable. Only ``No`` reserves them, and never for blocks of one or two addresses.
- Order: Services with requested IPs first, then the rest, each by namespace/name (a real operator
  processes events as they come; the twin fixes one deterministic order).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from generators.readback.cilium import Pool
from generators.readback.selectors import SelectorError, describe_selector, selector_matches
from generators.readback.services import VIP_ANNOTATIONS, Service

CILIUM_LB_CLASSES = ("io.cilium/bgp-control-plane", "io.cilium/l2-announcer")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass
class LBRange:
    pool: str
    first: Address
    last: Address
    from_cidr: bool
    disabled: bool
    selector: dict | None
    taken: set[Address] = field(default_factory=set)  # allocated or reserved

    def contains(self, ip: Address) -> bool:
        return ip.version == self.first.version and int(self.first) <= int(ip) <= int(self.last)

    def first_free(self) -> Address | None:
        ip = self.first
        while int(ip) <= int(self.last):
            if ip not in self.taken:
                return ip
            ip += 1
        return None

    def describe(self) -> str:
        return f"{self.first}-{self.last} of pool {self.pool}"


@dataclass(frozen=True)
class Allocation:
    service: str  # namespace/name
    ips: tuple[str, ...]  # empty when no IP could be assigned
    pool: str = ""
    reason: str = ""  # why no IP, or how it was chosen

    @property
    def ok(self) -> bool:
        return bool(self.ips)


def build_ranges(pools: list[Pool]) -> tuple[list[LBRange], list[str]]:
    ranges: list[LBRange] = []
    problems: list[str] = []
    for pool in pools:
        problems += list(pool.invalid_blocks)
        for block in pool.blocks:
            rng = LBRange(
                pool=pool.name,
                first=block.first,
                last=block.last,
                from_cidr=block.network is not None,
                disabled=pool.disabled,
                selector=pool.service_selector,
            )
            if rng.from_cidr and pool.reserves_first_last and int(block.last) - int(block.first) >= 2:
                rng.taken.update({block.first, block.last})
            ranges.append(rng)
    return ranges, problems


def _pool_selects(rng: LBRange, svc: Service) -> bool:
    # No serviceSelector: every Service matches (unlike BGP advertisement selectors).
    return rng.selector is None or selector_matches(rng.selector, svc.bgp_labels())


def requested_ips(svc: Service) -> tuple[list[Address], list[str]]:
    raw: list[str] = []
    if svc.load_balancer_ip:
        raw.append(svc.load_balancer_ip)
    for key in VIP_ANNOTATIONS:
        if svc.annotations.get(key):
            raw.extend(part.strip() for part in svc.annotations[key].split(","))
            break
    ips: list[Address] = []
    bad: list[str] = []
    for text in raw:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            bad.append(text)
            continue
        if ip not in ips:
            ips.append(ip)
    return ips, bad


def is_lbipam_service(svc: Service) -> bool:
    return svc.type == "LoadBalancer" and (
        svc.load_balancer_class is None or svc.load_balancer_class in CILIUM_LB_CLASSES
    )


def _wants_v4(svc: Service) -> bool:
    if not svc.ip_families or svc.ip_families[0] == "IPv4":
        return True
    return "IPv4" in svc.ip_families and svc.ip_family_policy in ("PreferDualStack", "RequireDualStack")


def _allocate_requested(svc: Service, ranges: list[LBRange]) -> Allocation:
    ips, bad = requested_ips(svc)
    got: list[str] = []
    reasons: list[str] = [f"requested IP {b!r} is not an IP address (ignored by Cilium)" for b in bad]
    pool = ""
    for ip in ips:
        containing = [r for r in ranges if not r.disabled and r.contains(ip)]
        selecting = [r for r in containing if _pool_selects(r, svc)]
        if not containing:
            reasons.append(f"no enabled CiliumLoadBalancerIPPool has a block containing {ip}")
            continue
        if not selecting:
            sel = "; ".join(f"pool {r.pool} selects {describe_selector(r.selector)}" for r in containing)
            reasons.append(
                f"the pool with a block containing {ip} does not select this Service (labels {svc.bgp_labels()}; {sel})"
            )
            continue
        rng = selecting[0]
        if ip in rng.taken:
            reasons.append(f"{ip} is already allocated (to another Service, or reserved by allowFirstLastIPs: No)")
            continue
        rng.taken.add(ip)
        got.append(str(ip))
        pool = pool or rng.pool
    if got:
        return Allocation(svc.key, tuple(got), pool, "pinned by annotation/loadBalancerIP")
    return Allocation(svc.key, (), "", "; ".join(reasons) or "no requested IP could be parsed")


def _allocate_any(svc: Service, ranges: list[LBRange]) -> Allocation:
    full = False
    for rng in ranges:
        if rng.disabled or rng.first.version != 4 or not _pool_selects(rng, svc):
            continue
        ip = rng.first_free()
        if ip is None:
            full = True
            continue
        rng.taken.add(ip)
        return Allocation(svc.key, (str(ip),), rng.pool, f"first free address of {rng.describe()}")
    if full:
        return Allocation(
            svc.key, (), "", "all enabled CiliumLoadBalancerIPPools that match this Service ran out of allocatable IPs"
        )
    return Allocation(
        svc.key,
        (),
        "",
        f"there are no enabled CiliumLoadBalancerIPPools that match this Service (labels {svc.bgp_labels()})",
    )


def allocate(pools: list[Pool], services: list[Service]) -> tuple[dict[str, Allocation], list[str]]:
    """LoadBalancer IPs by Service key (namespace/name), plus problems found in the pools."""
    ranges, problems = build_ranges(pools)
    handled = [s for s in services if is_lbipam_service(s)]
    pinned = sorted(
        (s for s in handled if requested_ips(s)[0] or requested_ips(s)[1]), key=lambda s: (s.namespace, s.name)
    )
    generic = sorted((s for s in handled if s not in pinned), key=lambda s: (s.namespace, s.name))
    out: dict[str, Allocation] = {}
    for svc in pinned + generic:
        try:
            if svc in pinned:
                out[svc.key] = _allocate_requested(svc, ranges)
            elif _wants_v4(svc):
                out[svc.key] = _allocate_any(svc, ranges)
            else:
                out[svc.key] = Allocation(svc.key, (), "", "Service asks for IPv6 only; the twin models IPv4 only")
        except SelectorError as exc:
            out[svc.key] = Allocation(svc.key, (), "", f"a pool's serviceSelector is invalid: {exc}")
    if not pools:
        problems.append("no CiliumLoadBalancerIPPool: LB-IPAM stays dormant and no LoadBalancer Service gets an IP")
    for svc in services:
        if svc.key not in out:
            why = (
                f"type {svc.type}"
                if svc.type != "LoadBalancer"
                else f"loadBalancerClass {svc.load_balancer_class} is not Cilium's"
            )
            out[svc.key] = Allocation(svc.key, (), "", f"not handled by LB-IPAM ({why})")
    return out, problems
