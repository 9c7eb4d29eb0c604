"""Stage 2: turn a raw inventory into a typed, validated model -- once, at the edge.

Every check that can be made on the inventory is made here, and every problem is reported with
the file, the field path, the bad value, why it is wrong and how to fix it. Nothing downstream
re-validates; templates only read fields of the model.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, Callable

from . import FIELD_MANAGER
from .errors import MISSING, InventoryError, Problem
from .inventory import INCLUDE_KEY, RawInventory, load_inventory
from .readback.cilium import CRD_HOLD, CRD_HOLD_MIN, CRD_KEEPALIVE, CRD_RESTART, CRD_RESTART_RANGE, HealthCheck
from .readback.durations import Duration, is_proto_duration
from .readback.frrconf import supports_n_bit
from .readback.selectors import SelectorError, selector_matches

ASN_MAX = 4294967295
AS_TRANS = 23456
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DNS_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
K3S_VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)\+k3s\d+$")
SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
FRR_VERSION = re.compile(r"^(\d+)\.(\d+)(\.\d+)?$")
IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


# ----------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class Node:
    name: str
    address: IPv4Address


@dataclass(frozen=True)
class Gateway:
    name: str
    address: IPv4Address
    router_id: IPv4Address
    asn: int
    frr_version: str
    peer_group: str
    # "helper" (FRR's default: keeps a restarting node's routes stale) | "disabled": one
    # `neighbor <node address> graceful-restart-disable` per node (FRR 8.4 ignores it on a peer-group's members)
    graceful_restart: str = "helper"

    @property
    def supports_n_bit(self) -> bool:
        """FRR understands the graceful-restart notification (N) bit from 8.3 on (RFC 8538)."""
        return supports_n_bit(self.frr_version) is True

    @property
    def gr_helper(self) -> bool:
        """Whether the gateway is a graceful-restart helper for the nodes (FRR's default)."""
        return self.graceful_restart == "helper"


@dataclass(frozen=True)
class Timers:
    hold: int
    keepalive: int
    connect_retry: int | None


@dataclass(frozen=True)
class GracefulRestart:
    enabled: bool
    restart_time: int


@dataclass(frozen=True)
class Bgp:
    cluster_asn: int
    node_label_key: str
    node_label_value: str
    timers: Timers
    graceful_restart: GracefulRestart
    cluster_config_name: str
    instance_name: str
    peer_name: str
    peer_config_name: str
    advertisement_name: str
    advertisement_labels: dict
    service_selector: dict

    @property
    def node_label(self) -> str:
        """As k3s `node-label` takes it."""
        return f"{self.node_label_key}={self.node_label_value}"

    @property
    def node_selector_labels(self) -> dict:
        return {self.node_label_key: self.node_label_value}


@dataclass(frozen=True)
class OutlierDetection:
    consecutive_local_origin_failure: int
    interval: Duration
    base_ejection_time: Duration


@dataclass(frozen=True)
class ApiserverVip:
    address: IPv4Address
    dns_name: str
    port: int
    service_name: str
    namespace: str
    labels: dict
    external_traffic_policy: str
    cluster_type: str  # "eds" (Cilium syncs the EndpointSlice) or "static" (the seed's fallback)
    connect_timeout: Duration
    idle_timeout: Duration
    health_check: HealthCheck
    outlier_detection: OutlierDetection

    @property
    def listener_name(self) -> str:
        return f"{self.service_name}-listener"

    @property
    def cluster_name(self) -> str:
        return f"{self.namespace}/{self.service_name}"

    @property
    def stat_prefix(self) -> str:
        return self.service_name.replace("-", "_") + "_tcp"


@dataclass(frozen=True)
class TraefikVip:
    address: IPv4Address


@dataclass(frozen=True)
class Platform:
    base_domain: str
    apex_domain: str
    cluster_issuer: str
    dns01_recursive_nameservers: tuple[str, ...]
    external_dns_sources: tuple[str, ...]

    @property
    def apex_listener(self) -> str:
        """The seed names the apex-domain listener after the domain's first label."""
        return "websecure-" + self.apex_domain.split(".")[0]

    @property
    def apex_tls_secret(self) -> str:
        return f"traefik-{self.apex_domain.split('.')[0]}-tls"


@dataclass(frozen=True)
class Cilium:
    k8s_service_host: str
    k8s_service_port: int
    operator_replicas: int


@dataclass(frozen=True)
class K3s:
    token_file: str
    disable: tuple[str, ...]


@dataclass(frozen=True)
class LabClient:
    subnet: IPv4Network
    address: IPv4Address
    gateway_address: IPv4Address


@dataclass(frozen=True)
class Lab:
    name: str
    fidelity: str  # "cilium" (Cilium's own code, a real apiserver) | "twin" (our Python twin, no Go builds)
    bridge: str
    client: LabClient
    converge_timeout: int


SSH_HOST_KEY_POLICIES = ("strict", "accept-new")


@dataclass(frozen=True)
class SshTarget:
    """How to reach one machine over SSH (paths only: no secret is ever in the inventory)."""

    name: str  # "gateway" or the node's name
    host: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None  # None: OpenSSH's own choice (agent, ~/.ssh/id_*)
    known_hosts: str | None = None  # None: OpenSSH's default (~/.ssh/known_hosts)
    host_key_policy: str = "strict"  # strict: the host key must be known; accept-new: learn it on first contact
    connect_timeout: int = 10


@dataclass(frozen=True)
class RackCluster:
    kubeconfig: str | None  # None: $KUBECONFIG, else ~/.kube/config
    context: str | None  # None: the kubeconfig's current context
    server: str | None  # None: https://<apiserver VIP>:<port>; a node's address for a bootstrap
    field_manager: str = FIELD_MANAGER


@dataclass(frozen=True)
class Rack:
    """The ``rack:`` section: how ``rack.plan`` and ``rack.apply`` reach the gateway, the nodes and the cluster."""

    gateway: SshTarget
    nodes: tuple[SshTarget, ...]
    cluster: RackCluster
    helm_release: str = "cilium"
    helm_namespace: str = "kube-system"
    helm_chart: str = "cilium/cilium"  # the chart as the operator's helm knows it (a repo alias or a path)

    def node(self, name: str) -> SshTarget:
        return next(n for n in self.nodes if n.name == name)


@dataclass(frozen=True)
class Model:
    name: str
    source: Path
    digest: str
    k3s_version: str
    cilium_version: str
    traefik_chart_version: str
    vlan: int
    subnet: IPv4Network
    gateway: Gateway
    nodes: tuple[Node, ...]
    k3s: K3s
    bgp: Bgp
    pool_name: str
    pool: IPv4Network
    pool_allow_first_last: bool
    apiserver: ApiserverVip
    traefik: TraefikVip
    platform: Platform
    cilium: Cilium
    lab: Lab | None = None
    rack: Rack | None = None  # None only for a model built before the section existed (never from load_model)

    @property
    def kubernetes_minor(self) -> str:
        m = K3S_VERSION.match(self.k3s_version)
        assert m
        return f"{m.group(1)}.{m.group(2)}"

    @property
    def first_server(self) -> Node:
        return self.nodes[0]

    @property
    def tls_sans(self) -> list[str]:
        """Every node IP, then the apiserver VIP and its DNS name (the seed's order)."""
        return [str(n.address) for n in self.nodes] + [str(self.apiserver.address), self.apiserver.dns_name]


# ----------------------------------------------------------------------------- the reader
def _fmt_path(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class _Reader:
    """Walks the raw mapping, collecting problems instead of stopping at the first."""

    def __init__(self, raw: RawInventory):
        self.raw = raw
        self.problems: list[Problem] = []

    def problem(self, path: tuple, value: Any, why: str, fix: str) -> None:
        self.problems.append(Problem(str(self.raw.origin_of(path)), _fmt_path(path), value, why, fix))

    def section(self, data: Any, path: tuple, allowed: dict[str, str], required: tuple[str, ...] = ()) -> dict:
        """A mapping with known keys. ``allowed`` maps each key to a one-line description."""
        if data is MISSING or data is None:
            data = {}
        if not isinstance(data, dict):
            self.problem(
                path,
                data,
                f"expected a mapping, got {type(data).__name__}",
                f"give `{_fmt_path(path)}` keys: {', '.join(allowed)}",
            )
            return {}
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), list(allowed), n=1)
                hint = f"did you mean `{close[0]}`? " if close else ""
                self.problem(path + (key,), data[key], "unknown key", f"{hint}known keys here: {', '.join(allowed)}")
        for key in required:
            if key not in data:
                self.problem(
                    path + (key,),
                    MISSING,
                    f"required field is missing ({allowed[key]})",
                    f"add `{key}:` under `{_fmt_path(path) or 'the top level'}`",
                )
        return data

    def value(
        self,
        data: dict,
        path: tuple,
        key: str,
        kind: str,
        default: Any = MISSING,
        check: Callable[[Any], str | None] | None = None,
        fix: str = "",
    ) -> Any:
        """Read ``data[key]`` as ``kind``; a missing key gives ``default``; returns MISSING on error."""
        p = path + (key,)
        if key not in data:
            return default
        v = data[key]
        conv = _CONVERTERS[kind]
        try:
            out = conv(v)
        except (ValueError, TypeError) as exc:
            self.problem(p, v, str(exc), fix or _DEFAULT_FIX[kind])
            return MISSING
        if check is not None:
            why = check(out)
            if why:
                self.problem(p, v, why, fix or _DEFAULT_FIX[kind])
                return MISSING
        return out


def _as_str(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise TypeError(f"expected a string, got {type(v).__name__}")
    return str(v)


def _as_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"expected an integer, got {type(v).__name__}")
    return v


def _as_bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise TypeError(f"expected true or false, got {type(v).__name__} {v!r}")
    return v


def _as_ip(v: Any) -> IPv4Address:
    if not isinstance(v, str):
        raise TypeError(f"expected an IPv4 address as a string, got {type(v).__name__}")
    try:
        return IPv4Address(v)
    except ValueError:
        raise ValueError(f"not an IPv4 address: {v!r}") from None


def _as_cidr(v: Any) -> IPv4Network:
    if not isinstance(v, str):
        raise TypeError(f"expected an IPv4 CIDR as a string, got {type(v).__name__}")
    try:
        return IPv4Network(v, strict=True)
    except ValueError as exc:
        raise ValueError(f"not an IPv4 network in CIDR form ({exc})") from None


def _as_asn(v: Any) -> int:
    n = _as_int(v)
    if not 1 <= n <= ASN_MAX:
        raise ValueError(f"ASN out of range 1..{ASN_MAX}")
    if n == AS_TRANS:
        raise ValueError("23456 is AS_TRANS, reserved for 4-byte ASN transition")
    return n


def _as_duration(v: Any) -> Duration:
    s = _as_str(v)
    if not is_proto_duration(s) or s.startswith("-"):
        raise ValueError("Cilium parses CCEC resources as protobuf JSON: a Duration must be seconds with an `s` suffix")
    return Duration.parse(s)


def _as_str_list(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise TypeError(f"expected a list of strings, got {type(v).__name__}")
    return tuple(_as_str(i) for i in v)


def _as_str_map(v: Any) -> dict:
    if not isinstance(v, dict):
        raise TypeError(f"expected a mapping of strings, got {type(v).__name__}")
    return {_as_str(k): _as_str(x) for k, x in v.items()}


def _as_selector(v: Any) -> dict:
    if not isinstance(v, dict) or not set(v) <= {"matchLabels", "matchExpressions"}:
        raise ValueError("expected a Kubernetes label selector with matchLabels and/or matchExpressions")
    try:
        selector_matches(v, {})
    except SelectorError as exc:
        raise ValueError(str(exc)) from None
    return v


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "str": _as_str,
    "int": _as_int,
    "bool": _as_bool,
    "ip": _as_ip,
    "cidr": _as_cidr,
    "asn": _as_asn,
    "duration": _as_duration,
    "str_list": _as_str_list,
    "str_map": _as_str_map,
    "selector": _as_selector,
}
_DEFAULT_FIX = {
    "str": "give a string",
    "int": "give a whole number without quotes",
    "bool": "write true or false",
    "ip": "write a dotted IPv4 address such as 10.31.0.10",
    "cidr": "write a network such as 10.31.0.80/28 (host bits zero)",
    "asn": f"use a private ASN, e.g. 64512-65534 or 4200000000-4294967294 (range 1..{ASN_MAX})",
    "duration": "write seconds with an s suffix, e.g. 0.1s instead of 100ms, 60s instead of 1m",
    "str_list": "give a YAML list of strings",
    "str_map": "give a mapping of string keys to string values",
    "selector": "e.g. {matchExpressions: [{key: app.kubernetes.io/name, operator: Exists}]}",
}


def _regex_check(rx: re.Pattern, what: str) -> Callable[[Any], str | None]:
    return lambda v: None if rx.match(str(v)) else f"not a valid {what}"


def _range_check(lo: int, hi: int) -> Callable[[int], str | None]:
    return lambda v: None if lo <= v <= hi else f"out of range {lo}..{hi}"


def _one_of(*options: str) -> Callable[[str], str | None]:
    return lambda v: None if v in options else f"must be one of {', '.join(options)}"


# ----------------------------------------------------------------------------- sections
_TOP = {
    INCLUDE_KEY: "other inventory files this one extends",
    "name": "short name of the site",
    "versions": "k3s, Cilium and Traefik chart versions",
    "network": "the node VLAN",
    "gateway": "the BGP router",
    "nodes": "the k3s servers",
    "k3s": "k3s settings",
    "bgp": "Cilium BGP settings",
    "lb_pool": "LoadBalancer IP pool",
    "vips": "pinned VIPs",
    "platform": "Traefik, cert-manager, external-dns settings",
    "cilium": "Cilium Helm settings",
    "lab": "lab-only settings (containerlab)",
    "rack": "how rack.plan / rack.apply reach the gateway, the nodes and the cluster (paths, never secrets)",
}


def _build(raw: RawInventory) -> Model:
    r = _Reader(raw)
    top = r.section(
        raw.data, (), _TOP, required=("name", "versions", "network", "gateway", "nodes", "bgp", "lb_pool", "vips")
    )
    name = r.value(top, (), "name", "str", check=_regex_check(DNS_LABEL, "name (lowercase letters, digits, dashes)"))

    v = r.section(
        top.get("versions", MISSING),
        ("versions",),
        {"k3s": "e.g. v1.35.1+k3s1", "cilium": "e.g. 1.19.3", "traefik_chart": "e.g. 39.0.7"},
        ("k3s", "cilium", "traefik_chart"),
    )
    k3s_version = r.value(
        v,
        ("versions",),
        "k3s",
        "str",
        check=_regex_check(K3S_VERSION, "k3s version"),
        fix="write it as k3s tags it, e.g. v1.35.1+k3s1",
    )
    cilium_version = r.value(
        v, ("versions",), "cilium", "str", check=_regex_check(SEMVER, "version"), fix="e.g. 1.19.3 (no leading v)"
    )
    traefik_version = r.value(
        v, ("versions",), "traefik_chart", "str", check=_regex_check(SEMVER, "version"), fix="e.g. 39.0.7"
    )

    n = r.section(
        top.get("network", MISSING),
        ("network",),
        {"vlan": "VLAN id of the node segment", "subnet": "the node subnet"},
        ("subnet",),
    )
    vlan = r.value(n, ("network",), "vlan", "int", default=1, check=_range_check(1, 4094))
    subnet = r.value(n, ("network",), "subnet", "cidr")

    def in_subnet(path: tuple, ip: Any, what: str) -> None:
        if isinstance(subnet, IPv4Network) and isinstance(ip, IPv4Address):
            if ip not in subnet:
                r.problem(
                    path,
                    str(ip),
                    f"{what} {ip} is not in the node subnet {subnet}",
                    f"use an address inside {subnet}, or fix network.subnet",
                )
            elif ip in (subnet.network_address, subnet.broadcast_address):
                r.problem(path, str(ip), f"{ip} is the network or broadcast address of {subnet}", "use a host address")

    g = r.section(
        top.get("gateway", MISSING),
        ("gateway",),
        {
            "name": "peer name Cilium uses",
            "address": "gateway IP on the node subnet",
            "router_id": "BGP router id (default: address)",
            "asn": "gateway ASN",
            "frr_version": "FRR version on the gateway",
            "peer_group": "FRR peer-group for the nodes",
            "graceful_restart": "helper (default) or disabled: whether FRR is a graceful-restart helper for the nodes",
        },
        ("address", "asn", "frr_version"),
    )
    gw_address = r.value(g, ("gateway",), "address", "ip")
    in_subnet(("gateway", "address"), gw_address, "gateway address")
    gr_modes = ("helper", "disabled")
    gr_fix = (
        "use `helper` (FRR's default: a restarting node's routes stay, stale, up to its restart time) or `disabled` "
        "(renders `neighbor <node address> graceful-restart-disable` per node: a silently lost node leaves at hold "
        "expiry)"
    )
    gw_gr: Any = MISSING
    if isinstance(g.get("graceful_restart"), bool):  # YAML reads off/on/no/yes/false/true as booleans
        r.problem(
            ("gateway", "graceful_restart"),
            g["graceful_restart"],
            f"YAML reads off/on/no/yes unquoted as a boolean; must be one of {', '.join(gr_modes)}",
            gr_fix,
        )
    else:
        gw_gr = r.value(
            g, ("gateway",), "graceful_restart", "str", default="helper", check=_one_of(*gr_modes), fix=gr_fix
        )
    gateway = Gateway(
        name=r.value(g, ("gateway",), "name", "str", default="gateway", check=_regex_check(DNS_LABEL, "name")),
        address=gw_address,
        router_id=r.value(g, ("gateway",), "router_id", "ip", default=gw_address),
        asn=r.value(g, ("gateway",), "asn", "asn"),
        frr_version=r.value(
            g,
            ("gateway",),
            "frr_version",
            "str",
            check=_regex_check(FRR_VERSION, "FRR version"),
            fix="e.g. \"8.4.4\"; see `vtysh -c 'show version'` on the gateway",
        ),
        peer_group=r.value(
            g, ("gateway",), "peer_group", "str", default="k3s-nodes", check=_regex_check(DNS_LABEL, "peer-group name")
        ),
        graceful_restart=gw_gr,
    )

    nodes = _nodes(r, top.get("nodes", MISSING), in_subnet, gw_address)

    k = r.section(
        top.get("k3s", MISSING),
        ("k3s",),
        {"token_file": "path of the join token file on joiners", "disable": "k3s packaged components to disable"},
    )
    k3s = K3s(
        token_file=r.value(
            k,
            ("k3s",),
            "token_file",
            "str",
            default="/etc/rancher/k3s/cluster-token",
            check=lambda s: None if s.startswith("/") else "must be an absolute path",
            fix="a path such as /etc/rancher/k3s/cluster-token (never the token itself)",
        ),
        disable=r.value(k, ("k3s",), "disable", "str_list", default=("traefik", "metrics-server", "servicelb")),
    )

    bgp = _bgp(r, top.get("bgp", MISSING), gateway)

    lp = r.section(
        top.get("lb_pool", MISSING),
        ("lb_pool",),
        {
            "name": "CiliumLoadBalancerIPPool name",
            "cidr": "the VIP block",
            "allow_first_last_ips": "may LB-IPAM hand out the block's first and last address (Cilium's default: yes)",
        },
        ("cidr",),
    )
    pool = r.value(lp, ("lb_pool",), "cidr", "cidr")
    allow_first_last = r.value(lp, ("lb_pool",), "allow_first_last_ips", "bool", default=True)
    if isinstance(pool, IPv4Network) and isinstance(subnet, IPv4Network) and not pool.subnet_of(subnet):
        r.problem(
            ("lb_pool", "cidr"),
            str(pool),
            f"the pool is not inside the node subnet {subnet}; the gateway reaches the VIPs via the nodes, but the "
            f"seed keeps them on VLAN {vlan}",
            "pick a block inside network.subnet",
        )
    if isinstance(pool, IPv4Network):
        for i, node in enumerate(nodes):
            if node.address in pool:
                r.problem(
                    ("nodes", i, "address"),
                    str(node.address),
                    f"node {node.name} sits inside the LB pool {pool}: LB-IPAM could hand its address to a Service",
                    "move the node or the pool",
                )
        if isinstance(gw_address, IPv4Address) and gw_address in pool:
            r.problem(
                ("gateway", "address"),
                str(gw_address),
                f"the gateway address is inside the LB pool {pool}",
                "move the pool",
            )
    pool_name = r.value(lp, ("lb_pool",), "name", "str", default="bgp-pool", check=_regex_check(DNS_LABEL, "name"))

    apiserver, traefik = _vips(r, top.get("vips", MISSING), pool, allow_first_last)
    platform = _platform(r, top.get("platform", MISSING))
    c = r.section(
        top.get("cilium", MISSING),
        ("cilium",),
        {
            "k8s_service_host": "apiserver address the agent uses without kube-proxy",
            "k8s_service_port": "its port",
            "operator_replicas": "cilium-operator replicas",
        },
    )
    cilium = Cilium(
        k8s_service_host=r.value(c, ("cilium",), "k8s_service_host", "str", default="127.0.0.1"),
        k8s_service_port=r.value(c, ("cilium",), "k8s_service_port", "int", default=6443, check=_range_check(1, 65535)),
        operator_replicas=r.value(c, ("cilium",), "operator_replicas", "int", default=1, check=_range_check(1, 10)),
    )
    lab = _lab(r, top["lab"], name) if "lab" in top else None
    rack = _rack(r, top.get("rack", MISSING), gw_address, nodes)

    if r.problems:
        raise InventoryError(r.problems)
    return Model(
        name=name,
        source=raw.path,
        digest=raw.digest(),
        k3s_version=k3s_version,
        cilium_version=cilium_version,
        traefik_chart_version=traefik_version,
        vlan=vlan,
        subnet=subnet,
        gateway=gateway,
        nodes=tuple(nodes),
        k3s=k3s,
        bgp=bgp,
        pool_name=pool_name,
        pool=pool,
        pool_allow_first_last=allow_first_last,
        apiserver=apiserver,
        traefik=traefik,
        platform=platform,
        cilium=cilium,
        lab=lab,
        rack=rack,
    )


def _nodes(r: _Reader, data: Any, in_subnet: Callable, gw_address: Any) -> list[Node]:
    if not isinstance(data, list) or not data:
        if data is not MISSING:
            r.problem(
                ("nodes",),
                data,
                "expected a non-empty list of nodes",
                "e.g. nodes: [{name: cat01, address: 10.31.0.218}]",
            )
        return []
    out: list[Node] = []
    names: dict[str, int] = {}
    addrs: dict[IPv4Address, int] = {}
    for i, item in enumerate(data):
        p = ("nodes", i)
        d = r.section(
            item, p, {"name": "node (and k3s node) name", "address": "node IP on the node subnet"}, ("name", "address")
        )
        name = r.value(d, p, "name", "str", check=_regex_check(DNS_LABEL, "node name (DNS label)"))
        addr = r.value(d, p, "address", "ip")
        in_subnet(p + ("address",), addr, "node address")
        if isinstance(name, str):
            if name in names:
                r.problem(
                    p + ("name",),
                    name,
                    f"duplicate node name (also nodes[{names[name]}])",
                    "give every node its own name",
                )
            names.setdefault(name, i)
        if isinstance(addr, IPv4Address):
            if addr in addrs:
                r.problem(
                    p + ("address",),
                    str(addr),
                    f"duplicate node address (also nodes[{addrs[addr]}])",
                    "give every node its own address",
                )
            if addr == gw_address:
                r.problem(
                    p + ("address",), str(addr), "the node uses the gateway's address", "give the node its own address"
                )
            addrs.setdefault(addr, i)
        if name is not MISSING and addr is not MISSING:
            out.append(Node(name, addr))
    return out


def _bgp(r: _Reader, data: Any, gateway: Gateway) -> Bgp:
    p = ("bgp",)
    b = r.section(
        data,
        p,
        {
            "cluster_asn": "the cluster's ASN (Cilium localASN)",
            "node_label": "label the BGP cluster config selects nodes on",
            "timers": "hold and keepalive seconds",
            "graceful_restart": "graceful restart",
            "cluster_config_name": "CiliumBGPClusterConfig name",
            "instance_name": "bgpInstances[0].name",
            "peer_name": "peer name",
            "peer_config_name": "CiliumBGPPeerConfig name",
            "advertisement_name": "CiliumBGPAdvertisement name",
            "advertisement_labels": "labels on the advertisement the peer config selects",
            "service_selector": "which Services get advertised",
        },
        ("cluster_asn",),
    )
    asn = r.value(b, p, "cluster_asn", "asn")
    nl = r.section(b.get("node_label", MISSING), p + ("node_label",), {"key": "label key", "value": "label value"})
    t = r.section(
        b.get("timers", MISSING),
        p + ("timers",),
        {
            "hold": "hold time seconds (min 3)",
            "keepalive": "keepalive seconds (max hold/3)",
            "connect_retry": "connect retry seconds",
        },
    )
    hold = r.value(
        t,
        p + ("timers",),
        "hold",
        "int",
        default=CRD_HOLD,
        check=_range_check(CRD_HOLD_MIN, 65535),
        fix="hold time must be at least 3 s (RFC 4271 and Cilium's CRD); the seed uses 15",
    )
    keepalive = r.value(t, p + ("timers",), "keepalive", "int", default=CRD_KEEPALIVE, check=_range_check(1, 65535))
    if isinstance(hold, int) and isinstance(keepalive, int) and keepalive * 3 > hold:
        r.problem(
            p + ("timers", "keepalive"),
            keepalive,
            f"keepalive {keepalive} s is more than a third of hold {hold} s: one lost keepalive can expire the session",
            f"use keepalive <= {hold // 3}",
        )
    gr = r.section(
        b.get("graceful_restart", MISSING),
        p + ("graceful_restart",),
        {"enabled": "graceful restart on", "restart_time": "restart time seconds"},
    )
    labels = r.value(b, p, "advertisement_labels", "str_map", default={"advertise": "bgp"})
    if isinstance(labels, dict) and not labels:
        r.problem(
            p + ("advertisement_labels",),
            labels,
            "the peer config selects advertisements by these labels; an empty set would select every advertisement",
            "give at least one label, e.g. {advertise: bgp}",
        )
    return Bgp(
        cluster_asn=asn,
        node_label_key=r.value(
            nl,
            p + ("node_label",),
            "key",
            "str",
            default="node.kubernetes.io/instance-type",
            check=_regex_check(LABEL_KEY, "label key"),
        ),
        node_label_value=r.value(
            nl,
            p + ("node_label",),
            "value",
            "str",
            default="bare-metal",
            check=_regex_check(LABEL_VALUE, "label value"),
        ),
        timers=Timers(
            hold,
            keepalive,
            r.value(t, p + ("timers",), "connect_retry", "int", default=None, check=_range_check(1, 65535)),
        ),
        graceful_restart=GracefulRestart(
            r.value(gr, p + ("graceful_restart",), "enabled", "bool", default=True),
            r.value(
                gr,
                p + ("graceful_restart",),
                "restart_time",
                "int",
                default=CRD_RESTART,
                check=_range_check(*CRD_RESTART_RANGE),
            ),
        ),
        cluster_config_name=r.value(
            b, p, "cluster_config_name", "str", default="cilium-bgp", check=_regex_check(DNS_LABEL, "name")
        ),
        instance_name=r.value(b, p, "instance_name", "str", default="k3s-bgp", check=_regex_check(DNS_LABEL, "name")),
        peer_name=r.value(
            b,
            p,
            "peer_name",
            "str",
            default=gateway.name if isinstance(gateway.name, str) else "gateway",
            check=_regex_check(DNS_LABEL, "name"),
        ),
        peer_config_name=r.value(
            b, p, "peer_config_name", "str", default=f"{gateway.name}-peer", check=_regex_check(DNS_LABEL, "name")
        ),
        advertisement_name=r.value(
            b, p, "advertisement_name", "str", default="lb-services", check=_regex_check(DNS_LABEL, "name")
        ),
        advertisement_labels=labels,
        service_selector=r.value(
            b,
            p,
            "service_selector",
            "selector",
            default={"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "Exists"}]},
        ),
    )


def _vips(r: _Reader, data: Any, pool: Any, allow_first_last: Any) -> tuple[ApiserverVip, TraefikVip]:
    p = ("vips",)
    v = r.section(
        data, p, {"apiserver": "the kube-apiserver VIP", "traefik": "the Traefik VIP"}, ("apiserver", "traefik")
    )
    a = r.section(
        v.get("apiserver", MISSING),
        p + ("apiserver",),
        {
            "address": "VIP",
            "dns_name": "DNS name for the kubeconfig",
            "port": "apiserver port",
            "service_name": "Service name",
            "namespace": "Service namespace",
            "labels": "Service labels",
            "external_traffic_policy": "Cluster (required for the CCEC path) or Local",
            "cluster_type": "eds (default) or static fallback",
            "connect_timeout": "upstream connect timeout",
            "idle_timeout": "TCP proxy idle timeout",
            "health_check": "active TCP health check",
            "outlier_detection": "passive ejection",
        },
        ("address", "dns_name"),
    )
    ap = p + ("apiserver",)
    h = r.section(
        a.get("health_check", MISSING),
        ap + ("health_check",),
        {
            "timeout": "probe timeout",
            "interval": "probe interval",
            "unhealthy_threshold": "failures to mark down",
            "healthy_threshold": "successes to mark up",
            "interval_jitter": "jitter",
            "no_traffic_interval": "interval without traffic",
        },
    )
    hp = ap + ("health_check",)
    o = r.section(
        a.get("outlier_detection", MISSING),
        ap + ("outlier_detection",),
        {
            "consecutive_local_origin_failure": "failures before ejection",
            "interval": "sweep interval",
            "base_ejection_time": "ejection time",
        },
    )
    op = ap + ("outlier_detection",)
    t = r.section(v.get("traefik", MISSING), p + ("traefik",), {"address": "VIP"}, ("address",))
    service_name = r.value(
        a, ap, "service_name", "str", default="kube-apiserver-bgp", check=_regex_check(DNS_LABEL, "name")
    )
    apiserver = ApiserverVip(
        address=r.value(a, ap, "address", "ip"),
        dns_name=r.value(
            a,
            ap,
            "dns_name",
            "str",
            check=_regex_check(DNS_NAME, "DNS name"),
            fix="a fully qualified lowercase name such as kube.example.org",
        ),
        port=r.value(a, ap, "port", "int", default=6443, check=_range_check(1, 65535)),
        service_name=service_name,
        namespace=r.value(a, ap, "namespace", "str", default="kube-system", check=_regex_check(DNS_LABEL, "namespace")),
        labels=r.value(a, ap, "labels", "str_map", default={"app.kubernetes.io/name": service_name}),
        external_traffic_policy=r.value(
            a,
            ap,
            "external_traffic_policy",
            "str",
            default="Cluster",
            check=_one_of("Cluster", "Local"),
            fix="use Cluster: with Local, Cilium's CCEC backend sync drops every backend not on the local node",
        ),
        cluster_type=r.value(a, ap, "cluster_type", "str", default="eds", check=_one_of("eds", "static")),
        connect_timeout=r.value(a, ap, "connect_timeout", "duration", default=Duration.parse("5s")),
        idle_timeout=r.value(a, ap, "idle_timeout", "duration", default=Duration.parse("3600s")),
        health_check=HealthCheck(
            timeout=r.value(h, hp, "timeout", "duration", default=Duration.parse("1s")),
            interval=r.value(h, hp, "interval", "duration", default=Duration.parse("1s")),
            unhealthy_threshold=r.value(h, hp, "unhealthy_threshold", "int", default=3, check=_range_check(1, 100)),
            healthy_threshold=r.value(h, hp, "healthy_threshold", "int", default=1, check=_range_check(1, 100)),
            interval_jitter=r.value(h, hp, "interval_jitter", "duration", default=Duration.parse("0.1s")),
            no_traffic_interval=r.value(h, hp, "no_traffic_interval", "duration", default=Duration.parse("1s")),
        ),
        outlier_detection=OutlierDetection(
            consecutive_local_origin_failure=r.value(
                o, op, "consecutive_local_origin_failure", "int", default=3, check=_range_check(1, 100)
            ),
            interval=r.value(o, op, "interval", "duration", default=Duration.parse("5s")),
            base_ejection_time=r.value(o, op, "base_ejection_time", "duration", default=Duration.parse("30s")),
        ),
    )
    traefik = TraefikVip(r.value(t, p + ("traefik",), "address", "ip"))
    seen: dict[IPv4Address, str] = {}
    for role, ip in (("apiserver", apiserver.address), ("traefik", traefik.address)):
        path = p + (role, "address")
        if not isinstance(ip, IPv4Address):
            continue
        if ip in seen:
            r.problem(
                path,
                str(ip),
                f"VIP {ip} is pinned twice (also vips.{seen[ip]}.address): LB-IPAM gives it to one Service only",
                "pin a different address from the pool",
            )
        seen.setdefault(ip, role)
        if isinstance(pool, IPv4Network):
            if ip not in pool:
                r.problem(
                    path,
                    str(ip),
                    f"VIP {ip} is outside the LB pool {pool}: LB-IPAM never assigns it and the Service stays pending",
                    f"pick an address inside {pool}",
                )
            elif (
                ip in (pool.network_address, pool.broadcast_address)
                and pool.prefixlen < 31
                and allow_first_last is False
            ):
                r.problem(
                    path,
                    str(ip),
                    f"{ip} is the first or last address of the pool {pool}, which "
                    "lb_pool.allow_first_last_ips: false reserves",
                    "pick another address of the pool, or allow the first and last addresses (Cilium's default)",
                )
    return apiserver, traefik


def _platform(r: _Reader, data: Any) -> Platform:
    p = ("platform",)
    d = r.section(
        data,
        p,
        {
            "base_domain": "cluster's DNS zone",
            "apex_domain": "second wildcard domain",
            "cluster_issuer": "cert-manager ClusterIssuer",
            "cert_manager": "cert-manager settings",
            "external_dns": "external-dns settings",
        },
        ("base_domain", "apex_domain"),
    )
    cm = r.section(
        d.get("cert_manager", MISSING),
        p + ("cert_manager",),
        {"dns01_recursive_nameservers": "host:port list for DNS-01 checks"},
    )
    ed = r.section(d.get("external_dns", MISSING), p + ("external_dns",), {"sources": "external-dns sources"})
    dns = _regex_check(DNS_NAME, "DNS name")
    return Platform(
        base_domain=r.value(d, p, "base_domain", "str", check=dns),
        apex_domain=r.value(d, p, "apex_domain", "str", check=dns),
        cluster_issuer=r.value(
            d, p, "cluster_issuer", "str", default="letsencrypt-issuer", check=_regex_check(DNS_LABEL, "name")
        ),
        dns01_recursive_nameservers=r.value(
            cm, p + ("cert_manager",), "dns01_recursive_nameservers", "str_list", default=()
        ),
        external_dns_sources=r.value(
            ed, p + ("external_dns",), "sources", "str_list", default=("ingress", "service", "gateway-httproute")
        ),
    )


FIDELITIES = ("cilium", "twin")


def _fidelity_check(value: str) -> str | None:
    if value == "full":
        return ("the full fidelity (real k3s in the lab) is not built yet, and cannot be here: k3s is not on the Go "
                "module proxy; `cilium` runs k3s's own parts (kube-apiserver, etcd) and Cilium's code instead")
    if value not in FIDELITIES:
        return f"must be one of {', '.join(FIDELITIES)}"
    return None


def _lab(r: _Reader, data: Any, site: Any) -> Lab:
    p = ("lab",)
    d = r.section(
        data,
        p,
        {
            "name": "containerlab lab name",
            "fidelity": "cilium (default) or twin",
            "bridge": "host bridge for the node segment",
            "client": "the user's side of the gateway",
            "converge_timeout": "seconds lab-up waits for convergence",
        },
    )
    c = r.section(
        d.get("client", MISSING),
        p + ("client",),
        {
            "subnet": "client link subnet",
            "address": "client address",
            "gateway_address": "gateway address on that link",
        },
    )
    name = r.value(d, p, "name", "str", default=f"{site}-lab", check=_regex_check(DNS_LABEL, "lab name"))
    subnet = r.value(c, p + ("client",), "subnet", "cidr", default=IPv4Network("192.0.2.0/24"))
    hosts = list(subnet.hosts())[:10] if isinstance(subnet, IPv4Network) else []
    address = r.value(c, p + ("client",), "address", "ip", default=hosts[9] if len(hosts) > 9 else MISSING)
    gw = r.value(c, p + ("client",), "gateway_address", "ip", default=hosts[0] if hosts else MISSING)
    for key, ip in (("address", address), ("gateway_address", gw)):
        if isinstance(ip, IPv4Address) and isinstance(subnet, IPv4Network) and ip not in subnet:
            r.problem(
                p + ("client", key),
                str(ip),
                f"not inside lab.client.subnet {subnet}",
                "pick an address inside the client subnet",
            )
    bridge_default = f"br-{name}"[:15] if isinstance(name, str) else "br-lab"
    return Lab(
        name=name,
        fidelity=r.value(
            d,
            p,
            "fidelity",
            "str",
            default="cilium",
            check=_fidelity_check,
            fix="use `fidelity: cilium` (Cilium's own code; Go builds, cached) or `fidelity: twin` (quick, no builds)",
        ),
        bridge=r.value(
            d,
            p,
            "bridge",
            "str",
            default=bridge_default,
            check=_regex_check(IFNAME, "interface name (max 15 characters)"),
        ),
        client=LabClient(subnet, address, gw),
        converge_timeout=r.value(d, p, "converge_timeout", "int", default=90, check=_range_check(5, 3600)),
    )


_SSH_KEYS = {
    "host": "address or name to connect to (default: the machine's address)",
    "port": "SSH port (default 22)",
    "user": "login (default root)",
    "key_file": "path of the private key (never the key itself)",
    "known_hosts": "path of the known_hosts file (default OpenSSH's)",
    "host_key_policy": "strict (default: the host key must be in known_hosts) or accept-new",
    "connect_timeout": "seconds to wait for the connection (default 10)",
}
_SECRET_MARKERS = ("-----BEGIN", "PRIVATE KEY", "ssh-ed25519 ", "ssh-rsa ")


def _ssh_target(r: _Reader, data: Any, path: tuple, name: str, host: str, base: SshTarget | None) -> SshTarget:
    d = r.section(data, path, _SSH_KEYS)
    b = base or SshTarget(name=name, host=host)

    def path_value(key: str, default: str | None) -> str | None:
        v = r.value(d, path, key, "str", default=default)
        if isinstance(v, str) and any(m in v for m in _SECRET_MARKERS):
            r.problem(path + (key,), "<redacted>", "this looks like key material, and no secret goes in the inventory",
                      f"write the path of the file instead, e.g. {key}: ~/.ssh/id_ed25519")
            return None
        return v if isinstance(v, str) else None

    return SshTarget(
        name=name,
        host=r.value(d, path, "host", "str", default=host),
        port=r.value(d, path, "port", "int", default=b.port, check=_range_check(1, 65535)),
        user=r.value(d, path, "user", "str", default=b.user, check=_regex_check(
            re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$"), "login name"), fix="a Unix login such as root or admin"),
        key_file=path_value("key_file", b.key_file),
        known_hosts=path_value("known_hosts", b.known_hosts),
        host_key_policy=r.value(d, path, "host_key_policy", "str", default=b.host_key_policy,
                                check=_one_of(*SSH_HOST_KEY_POLICIES),
                                fix="strict (add the host's key to known_hosts first) or accept-new (learn it once)"),
        connect_timeout=r.value(d, path, "connect_timeout", "int", default=b.connect_timeout,
                                check=_range_check(1, 300)),
    )


def _rack(r: _Reader, data: Any, gw_address: Any, nodes: list[Node]) -> Rack:
    p = ("rack",)
    d = r.section(data, p, {
        "ssh": "SSH settings every target starts from",
        "gateway": "the gateway's SSH settings",
        "nodes": "per node (by name): its SSH settings",
        "cluster": "kubeconfig, context and server of the cluster",
        "cilium": "the Helm release of Cilium (release, namespace)",
    })
    base = _ssh_target(r, d.get("ssh", MISSING), p + ("ssh",), "*", "", None)
    gateway = _ssh_target(r, d.get("gateway", MISSING), p + ("gateway",), "gateway", str(gw_address), base)
    per_node = r.section(d.get("nodes", MISSING), p + ("nodes",), {n.name: f"node {n.name}" for n in nodes})
    targets = tuple(_ssh_target(r, per_node.get(n.name, MISSING), p + ("nodes", n.name), n.name, str(n.address), base)
                    for n in nodes)
    c = r.section(d.get("cluster", MISSING), p + ("cluster",), {
        "kubeconfig": "path of the kubeconfig (default $KUBECONFIG, else ~/.kube/config)",
        "context": "its context (default the current one)",
        "server": "server URL override (default https://<apiserver VIP>:<port>)",
        "field_manager": f"server-side apply field manager (default {FIELD_MANAGER})",
    })
    server = r.value(c, p + ("cluster",), "server", "str", default=None,
                     check=_regex_check(re.compile(r"^https://[^\s/]+(:\d+)?/?$"), "https:// URL"),
                     fix="e.g. https://10.31.0.218:6443 (a node, for a bootstrap before the VIP answers)")
    cluster = RackCluster(
        kubeconfig=r.value(c, p + ("cluster",), "kubeconfig", "str", default=None),
        context=r.value(c, p + ("cluster",), "context", "str", default=None),
        server=server if isinstance(server, str) else None,
        field_manager=r.value(c, p + ("cluster",), "field_manager", "str", default=FIELD_MANAGER,
                              check=_regex_check(re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"),
                                                 "field manager name")),
    )
    h = r.section(d.get("cilium", MISSING), p + ("cilium",), {
        "release": "Helm release name (default cilium)",
        "namespace": "its namespace (default kube-system)",
        "chart": "the chart as your helm knows it: a repo alias (default cilium/cilium) or a local path",
    })
    return Rack(
        gateway=gateway,
        nodes=targets,
        cluster=cluster,
        helm_release=r.value(h, p + ("cilium",), "release", "str", default="cilium",
                             check=_regex_check(DNS_LABEL, "release name")),
        helm_namespace=r.value(h, p + ("cilium",), "namespace", "str", default="kube-system",
                               check=_regex_check(DNS_LABEL, "namespace")),
        helm_chart=r.value(h, p + ("cilium",), "chart", "str", default="cilium/cilium"),
    )


def build_model(raw: RawInventory) -> Model:
    return _build(raw)


def load_model(path: str | Path) -> Model:
    """Read, merge and validate an inventory. Raises InventoryError listing every problem."""
    return build_model(load_inventory(path))
