"""A tolerant parser of FRR's ``router bgp`` configuration, with a line number on everything.

It reads what people actually feed ``vtysh -f``: FRR's own ``write memory`` output (indented,
``frr version``/``frr defaults`` header, ``exit`` lines) as well as hand-written or
Jinja-rendered blocks without indentation, with ``!``/``#`` comments anywhere. Commands it does
not know are kept in :attr:`RouterBgp.unknown` and otherwise ignored; nothing here raises on
odd input. Only parsing lives here: what a configuration *means* for the lab is decided by the
callers (``generators.preflight``).

Facts about FRR defaults that callers rely on (docs/FACTS.md#frr):
- ``bgp ebgp-requires-policy`` is on unless the config says ``no bgp ebgp-requires-policy``;
- ``bgp default ipv4-unicast`` is on unless the config says ``no bgp default ipv4-unicast``;
- without a ``maximum-paths`` line FRR uses its compile-time limit (Debian: 256).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from generators.versions import version_tuple

IPV4_UNICAST = ("ipv4", "unicast")

# Top-level (config node) commands that end a ``router bgp`` block when they appear inside it.
_TOP_LEVEL_PREFIXES = (
    "router ",
    "interface ",
    "line ",
    "route-map ",
    "ip ",
    "ipv6 ",
    "access-list ",
    "vrf ",
    "hostname ",
    "log ",
    "service ",
    "password ",
    "enable ",
    "debug ",
    "frr ",
    "end",
    "bgp as-path ",
    "bgp community-list ",
    "bgp large-community-list ",
    "bgp extcommunity-list ",
    "segment-routing",
    "mpls ",
    "agentx",
    "key chain ",
    "bfd",
)


@dataclass(frozen=True)
class Setting:
    """One configuration value and the line (1-based) it came from."""

    value: str
    line: int
    text: str  # the line as written, stripped


@dataclass
class Neighbor:
    """``neighbor NAME ...`` lines of the router node; NAME is an address, a peer-group or an interface."""

    name: str
    is_peer_group: bool = False
    defined_line: int = 0  # first line that names this neighbor
    remote_as: Setting | None = None  # a number, "external" or "internal"
    peer_group: Setting | None = None  # the group this neighbor belongs to
    timers: tuple[int, int, int] | None = None  # (keepalive, hold, line)
    graceful_restart: Setting | None = None  # "graceful-restart", "graceful-restart-disable", "graceful-restart-helper"
    update_source: Setting | None = None
    other: list[Setting] = field(default_factory=list)  # any other neighbor option

    @property
    def is_address(self) -> bool:
        return _is_ip(self.name)


@dataclass
class AddressFamily:
    afi: str
    safi: str
    line: int  # 0 when implied (commands given outside an address-family block)
    activate: dict[str, int] = field(default_factory=dict)  # neighbor -> line
    deactivate: dict[str, int] = field(default_factory=dict)  # "no neighbor X activate" -> line
    soft_reconfiguration: dict[str, int] = field(default_factory=dict)
    route_maps: dict[tuple[str, str], Setting] = field(default_factory=dict)  # (neighbor, "in"|"out") -> map name
    maximum_paths: Setting | None = None  # eBGP
    maximum_paths_ibgp: Setting | None = None
    other: list[Setting] = field(default_factory=list)
    statements: list[Setting] = field(default_factory=list)  # every line of the block, in order (not the exits)

    @property
    def title(self) -> str:
        return f"address-family {self.afi} {self.safi}"


@dataclass
class RouterBgp:
    asn: str
    line: int
    vrf: str = ""  # "" for the default VRF
    router_id: Setting | None = None
    ebgp_requires_policy: bool = True
    ebgp_requires_policy_line: int = 0  # line of the explicit (no) bgp ebgp-requires-policy, 0 if default
    default_ipv4_unicast: bool = True
    default_ipv4_unicast_line: int = 0
    multipath_relax: Setting | None = None
    graceful_restart: list[Setting] = field(
        default_factory=list
    )  # every "bgp graceful-restart..." line (with "no " kept)
    timers: tuple[int, int, int] | None = None  # "timers bgp KEEPALIVE HOLD": (keepalive, hold, line)
    listen_ranges: list[tuple[str, str, int]] = field(default_factory=list)  # (prefix, peer-group, line)
    neighbors: dict[str, Neighbor] = field(default_factory=dict)
    address_families: dict[tuple[str, str], AddressFamily] = field(default_factory=dict)
    unknown: list[Setting] = field(default_factory=list)
    statements: list[Setting] = field(default_factory=list)  # every line directly under the router node, in order

    @property
    def title(self) -> str:
        return f"router bgp {self.asn}" + (f" vrf {self.vrf}" if self.vrf else "")

    def address_family(self, afi: str = "ipv4", safi: str = "unicast") -> AddressFamily | None:
        return self.address_families.get((afi, safi))

    def peers(self) -> list[Neighbor]:
        """Neighbors that are real sessions (not peer-group templates), in file order."""
        return [
            n
            for n in self.neighbors.values()
            if not n.is_peer_group and (n.is_address or n.remote_as is not None or n.peer_group is not None)
        ]

    def group_of(self, neighbor: Neighbor) -> Neighbor | None:
        if neighbor.peer_group is None:
            return None
        return self.neighbors.get(neighbor.peer_group.value)

    def effective_remote_as(self, neighbor: Neighbor) -> Setting | None:
        """The neighbor's own ``remote-as`` or else its peer-group's (FRR lets the neighbor override)."""
        if neighbor.remote_as is not None:
            return neighbor.remote_as
        group = self.group_of(neighbor)
        return group.remote_as if group is not None else None

    def effective_timers(self, neighbor: Neighbor) -> tuple[int, int, int] | None:
        """``(keepalive, hold, line)`` from the neighbor, its group, or ``timers bgp``; None for FRR's defaults."""
        group = self.group_of(neighbor)
        for source in (neighbor.timers, group.timers if group else None, self.timers):
            if source is not None:
                return source
        return None

    def names_for(self, neighbor: Neighbor) -> list[str]:
        """The names under which per-family settings of this neighbor may be written: itself, then its group."""
        names = [neighbor.name]
        if neighbor.peer_group is not None:
            names.append(neighbor.peer_group.value)
        return names

    def is_activated(self, neighbor: Neighbor, afi: str = "ipv4", safi: str = "unicast") -> bool:
        """Whether the family is active for the neighbor, with FRR's ``bgp default ipv4-unicast`` rule."""
        family = self.address_family(afi, safi)
        names = self.names_for(neighbor)
        if family is not None:
            if neighbor.name in family.deactivate:
                return False
            if any(n in family.activate for n in names):
                return True
            if any(n in family.deactivate for n in names):
                return False
        return (afi, safi) == IPV4_UNICAST and self.default_ipv4_unicast

    def route_map(self, neighbor: Neighbor, direction: str, afi: str = "ipv4", safi: str = "unicast") -> Setting | None:
        family = self.address_family(afi, safi)
        if family is None:
            return None
        for name in self.names_for(neighbor):
            found = family.route_maps.get((name, direction))
            if found is not None:
                return found
        return None

    def listen_range_for(self, address: str) -> tuple[str, str, int] | None:
        """The ``bgp listen range`` (prefix, group, line) that accepts a dynamic neighbor at ``address``."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        for prefix, group, line in self.listen_ranges:
            try:
                if ip in ipaddress.ip_network(prefix, strict=False):
                    return prefix, group, line
            except ValueError:
                continue
        return None


@dataclass
class FrrConfig:
    version: Setting | None = None  # from a "frr version X" line
    defaults: Setting | None = None  # from a "frr defaults PROFILE" line
    routers: list[RouterBgp] = field(default_factory=list)
    route_map_names: dict[str, int] = field(default_factory=dict)  # route-map NAME -> first line

    @property
    def bgp(self) -> RouterBgp | None:
        """The default-VRF ``router bgp`` block (the one the lab is about), if any."""
        for router in self.routers:
            if not router.vrf:
                return router
        return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _strip_comment(raw: str) -> str:
    text = raw.strip()
    if text.startswith(("!", "#")):
        return ""
    return text


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


@dataclass
class _State:
    config: FrrConfig
    router: RouterBgp | None = None
    family: AddressFamily | None = None
    in_route_map: bool = False


def parse_frr(text: str) -> FrrConfig:
    """Parse ``frr.conf`` text; never raises on unknown or malformed lines."""
    state = _State(FrrConfig())
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw)
        if not line:
            continue
        _parse_line(state, Setting(line, number, line))
    return state.config


def _parse_line(state: _State, s: Setting) -> None:
    line = s.text
    words = line.split()
    if words[0] == "router" and len(words) >= 3 and words[1] == "bgp":
        _open_router(state, words, s.line)
        return
    if state.router is None or _ends_router(line):
        state.router = None
        state.family = None
        _parse_top_level(state, words, s)
        return
    _parse_router_line(state, words, s)


def _ends_router(line: str) -> bool:
    if line == "end":
        return True
    return line.startswith(_TOP_LEVEL_PREFIXES)


def _parse_top_level(state: _State, words: list[str], s: Setting) -> None:
    cfg = state.config
    if words[:2] == ["frr", "version"] and len(words) >= 3:
        cfg.version = Setting(words[2], s.line, s.text)
    elif words[:2] == ["frr", "defaults"] and len(words) >= 3:
        cfg.defaults = Setting(words[2], s.line, s.text)
    elif words[0] == "route-map" and len(words) >= 2:
        cfg.route_map_names.setdefault(words[1], s.line)


def _open_router(state: _State, words: list[str], line: int) -> None:
    vrf = words[4] if len(words) >= 5 and words[3] in ("vrf", "view") else ""
    router = RouterBgp(asn=words[2], line=line, vrf=vrf)
    state.config.routers.append(router)
    state.router = router
    state.family = None


def _parse_router_line(state: _State, words: list[str], s: Setting) -> None:
    router = state.router
    assert router is not None
    if words[0] == "address-family" and len(words) >= 2:
        afi, safi = words[1], (words[2] if len(words) >= 3 else "unicast")
        family = router.address_families.get((afi, safi))
        if family is None:
            family = AddressFamily(afi, safi, s.line)
            router.address_families[(afi, safi)] = family
        state.family = family
        return
    if words[0] in ("exit-address-family", "exit"):
        if state.family is not None:
            state.family = None
        elif words[0] == "exit":
            state.router = None
        return
    statement = Setting(" ".join(words), s.line, s.text)  # whitespace as FRR prints it
    (state.family.statements if state.family is not None else router.statements).append(statement)
    negated = words[0] == "no"
    body = words[1:] if negated else words
    if not body:
        return
    if body[0] == "neighbor" and len(body) >= 3:
        _parse_neighbor(state, body, negated, s)
    elif body[0] == "bgp":
        _parse_bgp_option(router, body, negated, s)
    elif body[0] == "timers" and len(body) >= 4 and body[1] == "bgp":
        ka, hold = _int(body[2]), _int(body[3])
        if ka is not None and hold is not None and not negated:
            router.timers = (ka, hold, s.line)
    elif body[0] == "maximum-paths":
        _parse_maximum_paths(_family_for(state, s), body, negated, s)
    else:
        target = state.family.other if state.family is not None else router.unknown
        target.append(s)


def _family_for(state: _State, s: Setting) -> AddressFamily:
    """The current address-family; commands given directly under ``router bgp`` mean ipv4 unicast."""
    if state.family is not None:
        return state.family
    router = state.router
    assert router is not None
    family = router.address_families.get(IPV4_UNICAST)
    if family is None:
        family = AddressFamily("ipv4", "unicast", 0)
        router.address_families[IPV4_UNICAST] = family
    return family


def _parse_maximum_paths(family: AddressFamily, body: list[str], negated: bool, s: Setting) -> None:
    if len(body) >= 3 and body[1] == "ibgp":
        family.maximum_paths_ibgp = None if negated else Setting(body[2], s.line, s.text)
    elif len(body) >= 2:
        family.maximum_paths = None if negated else Setting(body[1], s.line, s.text)


def _parse_bgp_option(router: RouterBgp, body: list[str], negated: bool, s: Setting) -> None:
    rest = body[1:]
    if rest[:1] == ["router-id"] and len(rest) >= 2:
        router.router_id = None if negated else Setting(rest[1], s.line, s.text)
    elif rest[:1] == ["ebgp-requires-policy"]:
        router.ebgp_requires_policy = not negated
        router.ebgp_requires_policy_line = s.line
    elif rest[:2] == ["default", "ipv4-unicast"]:
        router.default_ipv4_unicast = not negated
        router.default_ipv4_unicast_line = s.line
    elif rest[:3] == ["bestpath", "as-path", "multipath-relax"]:
        router.multipath_relax = None if negated else Setting("multipath-relax", s.line, s.text)
    elif rest and rest[0].startswith("graceful-restart"):
        router.graceful_restart.append(s)
    elif rest[:2] == ["listen", "range"] and len(rest) >= 5 and rest[3] == "peer-group":
        router.listen_ranges.append((rest[2], rest[4], s.line))
    else:
        router.unknown.append(s)


def _neighbor(router: RouterBgp, name: str, line: int) -> Neighbor:
    found = router.neighbors.get(name)
    if found is None:
        found = Neighbor(name=name, defined_line=line)
        router.neighbors[name] = found
    return found


def _parse_neighbor(state: _State, body: list[str], negated: bool, s: Setting) -> None:
    router = state.router
    assert router is not None
    name, option, args = body[1], body[2], body[3:]
    if option in (
        "activate",
        "soft-reconfiguration",
        "route-map",
        "prefix-list",
        "filter-list",
        "allowas-in",
        "next-hop-self",
        "default-originate",
        "addpath-tx-all-paths",
        "maximum-prefix",
        "send-community",
        "route-reflector-client",
        "weight",
        "remove-private-AS",
        "as-override",
        "attribute-unchanged",
        "capability",
    ):
        _parse_neighbor_family(router, _family_for(state, s), name, option, args, negated, s)
        return
    neighbor = _neighbor(router, name, s.line)
    if option == "peer-group":
        if args:
            neighbor.peer_group = None if negated else Setting(args[0], s.line, s.text)
        else:
            neighbor.is_peer_group = not negated
    elif option == "remote-as" and args:
        neighbor.remote_as = None if negated else Setting(args[0], s.line, s.text)
    elif option == "timers" and len(args) >= 2 and args[0].isdigit() and args[1].isdigit():
        neighbor.timers = None if negated else (int(args[0]), int(args[1]), s.line)
    elif option.startswith("graceful-restart"):
        neighbor.graceful_restart = None if negated else Setting(option, s.line, s.text)
    elif option == "update-source" and args:
        neighbor.update_source = None if negated else Setting(args[0], s.line, s.text)
    elif option == "interface" and args and args[0] == "remote-as" and len(args) >= 2:
        neighbor.remote_as = None if negated else Setting(args[1], s.line, s.text)
    else:
        neighbor.other.append(s)


def _parse_neighbor_family(
    router: RouterBgp, family: AddressFamily, name: str, option: str, args: list[str], negated: bool, s: Setting
) -> None:
    _neighbor(router, name, s.line)
    if option == "activate":
        if negated:
            family.activate.pop(name, None)
            family.deactivate[name] = s.line
        else:
            family.deactivate.pop(name, None)
            family.activate[name] = s.line
    elif option == "soft-reconfiguration" and not negated:
        family.soft_reconfiguration[name] = s.line
    elif option == "route-map" and len(args) >= 2 and args[1] in ("in", "out"):
        key = (name, args[1])
        if negated:
            family.route_maps.pop(key, None)
        else:
            family.route_maps[key] = Setting(args[0], s.line, s.text)
    else:
        family.other.append(s)


# FRR learned the graceful-restart notification (N) bit, RFC 8538, in 8.3; it sends it by default from then on.
NBIT_SINCE = (8, 3, 0)
# FRR requires an eBGP policy (or `no bgp ebgp-requires-policy`) since 7.4.
EBGP_REQUIRES_POLICY_SINCE = (7, 4, 0)


def supports_n_bit(version: str | tuple[int, int, int] | None) -> bool | None:
    """Whether an FRR of this version understands the N-bit; None when the version is unknown or unreadable."""
    parsed = version_tuple(version) if isinstance(version, str) else version
    return None if parsed is None else parsed >= NBIT_SINCE
