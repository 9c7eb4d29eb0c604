"""Cilium 1.19's resources read back from rendered documents, as typed objects with the CRD defaults.

Every reader is tolerant: a field written the wrong way (a string where a number belongs, a list that is
not one) reads as "unknown" (None) instead of raising, so that preflight can report it and the others
can skip it. The defaults are the CRDs' (``pkg/k8s/apis/cilium.io/client/crds/v2`` in Cilium 1.19.3).

- ``CiliumLoadBalancerIPPool``: ``spec.blocks`` (``cidr``, or ``start``/``stop``), ``disabled``,
  ``serviceSelector``, ``allowFirstLastIPs``. 1.19 knows no ``spec.cidrs`` (the pre-1.15 name): the CRD
  prunes it, so such a pool has no blocks.
- ``CiliumBGPClusterConfig``: ``nodeSelector`` and ``bgpInstances[].peers[]``.
- ``CiliumBGPPeerConfig``: timers, graceful restart, eBGP multihop, transport, families.
- ``CiliumBGPAdvertisement``: labels and ``advertisements[]``.
- ``CiliumClusterwideEnvoyConfig`` / ``CiliumEnvoyConfig``: ``services`` bindings and ``resources[]``, each
  parsed as protojson reads it: one invalid resource (a Duration written ``100ms``) is dropped on its own.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from .durations import Duration, DurationError, find_durations
from .rendered import Doc, Rendered
from .values import as_bool, as_dict, as_int, as_ip, as_seq

# CRD defaults (Cilium 1.19.3, CiliumBGPPeerConfig / CiliumBGPClusterConfig).
CRD_CONNECT_RETRY = 120
CRD_HOLD = 90
CRD_HOLD_MIN = 3
CRD_KEEPALIVE = 30
CRD_RESTART = 120
CRD_RESTART_RANGE = (1, 4095)
CRD_EBGP_MULTIHOP = 1
CRD_PEER_PORT = 179
CRD_FAMILIES = (("ipv6", "unicast"), ("ipv4", "unicast"))  # when spec.families is empty
BGP_LB_CLASS = "io.cilium/bgp-control-plane"
CCEC_KINDS = ("CiliumClusterwideEnvoyConfig", "CiliumEnvoyConfig")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _int_field(mapping: dict, key: str, default: int) -> int | None:
    """``default`` when absent; the whole number written (quoted or not); None when it is not one."""
    return default if mapping.get(key) is None else as_int(mapping.get(key))


# ----------------------------------------------------------------------------- LB-IPAM pool
@dataclass(frozen=True)
class PoolBlock:
    pool: Doc  # the CiliumLoadBalancerIPPool it belongs to
    path: str  # e.g. spec.blocks[0].cidr
    first: Address
    last: Address
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None  # for cidr blocks

    def contains(self, address: str | Address) -> bool:
        ip = as_ip(address) if isinstance(address, str) else address
        return ip is not None and ip.version == self.first.version and self.first <= ip <= self.last  # type: ignore[operator]

    @property
    def text(self) -> str:
        return str(self.network) if self.network else f"{self.first}-{self.last}"


@dataclass(frozen=True)
class Pool:
    doc: Doc
    blocks: tuple[PoolBlock, ...]
    invalid_blocks: tuple[str, ...]  # why a block could not be read (Cilium rejects the pool)
    disabled: bool
    service_selector: dict | None
    allow_first_last: str | None  # "Yes", "No", or None (unset: Cilium 1.19 treats it as "Yes")

    @property
    def name(self) -> str:
        return self.doc.name

    @property
    def reserves_first_last(self) -> bool:
        return self.allow_first_last == "No"

    @classmethod
    def from_doc(cls, doc: Doc) -> "Pool":
        spec = doc.spec
        blocks: list[PoolBlock] = []
        invalid: list[str] = []
        for i, raw in enumerate(as_seq(spec.get("blocks"))):
            block, path = as_dict(raw), f"spec.blocks[{i}]"
            if block.get("cidr"):
                try:
                    net = ipaddress.ip_network(str(block["cidr"]).strip(), strict=False)
                except ValueError as exc:
                    invalid.append(f"{doc.ref} block {i}: {exc}; Cilium rejects the pool")
                    continue
                blocks.append(PoolBlock(doc, f"{path}.cidr", net.network_address, net.broadcast_address, net))
            elif block.get("start"):
                first, last = as_ip(block["start"]), as_ip(block.get("stop") or block["start"])
                if first is None or last is None:
                    invalid.append(f"{doc.ref} block {i}: start/stop is not an IP address; Cilium rejects the pool")
                    continue
                blocks.append(PoolBlock(doc, f"{path}.start", first, last, None))
            else:
                invalid.append(f"{doc.ref} block {i}: neither cidr nor start; Cilium rejects the pool")
        raw_allow = spec.get("allowFirstLastIPs")
        return cls(
            doc=doc,
            blocks=tuple(blocks),
            invalid_blocks=tuple(invalid),
            disabled=as_bool(spec.get("disabled")) is True,
            service_selector=spec.get("serviceSelector") if "serviceSelector" in spec else None,
            allow_first_last=None if raw_allow is None else str(raw_allow),
        )


def pools(rendered: Rendered) -> list[Pool]:
    return [Pool.from_doc(d) for d in rendered.of_kind("CiliumLoadBalancerIPPool")]


# ----------------------------------------------------------------------------- BGP
@dataclass(frozen=True)
class Family:
    afi: str
    safi: str
    advertisements: dict | None = None  # label selector over CiliumBGPAdvertisement labels

    @property
    def name(self) -> str:
        return f"{self.afi}/{self.safi}"


@dataclass(frozen=True)
class PeerConfig:
    """A CiliumBGPPeerConfig with the CRD defaults filled in. None: written, but not as a number."""

    name: str
    doc: Doc | None  # None: the defaulted config of a peer without peerConfigRef
    hold: int | None = CRD_HOLD
    keepalive: int | None = CRD_KEEPALIVE
    connect_retry: int | None = CRD_CONNECT_RETRY
    gr_enabled: bool = False
    restart_time: int | None = CRD_RESTART
    ebgp_multihop: int | None = CRD_EBGP_MULTIHOP
    peer_port: int | None = CRD_PEER_PORT
    families: tuple[Family, ...] = tuple(Family(a, s) for a, s in CRD_FAMILIES)

    @property
    def ref(self) -> str:
        return self.doc.ref if self.doc is not None else f"(default peer config of {self.name})"

    @classmethod
    def from_doc(cls, doc: Doc) -> "PeerConfig":
        spec = doc.spec
        timers = as_dict(spec.get("timers"))
        gr = as_dict(spec.get("gracefulRestart"))
        families = tuple(
            Family(str(as_dict(f).get("afi")), str(as_dict(f).get("safi")), as_dict(f).get("advertisements"))
            for f in as_seq(spec.get("families"))
        )
        return cls(
            name=doc.name,
            doc=doc,
            hold=_int_field(timers, "holdTimeSeconds", CRD_HOLD),
            keepalive=_int_field(timers, "keepAliveTimeSeconds", CRD_KEEPALIVE),
            connect_retry=_int_field(timers, "connectRetryTimeSeconds", CRD_CONNECT_RETRY),
            gr_enabled=as_bool(gr.get("enabled")) is True,
            restart_time=_int_field(gr, "restartTimeSeconds", CRD_RESTART),
            ebgp_multihop=_int_field(spec, "ebgpMultihop", CRD_EBGP_MULTIHOP),
            peer_port=_int_field(as_dict(spec.get("transport")), "peerPort", CRD_PEER_PORT),
            families=families or tuple(Family(a, s) for a, s in CRD_FAMILIES),
        )

    @classmethod
    def defaulted(cls, peer: str) -> "PeerConfig":
        """What a peer without ``peerConfigRef`` gets: every default, and families without advertisements."""
        return cls(name=peer, doc=None)


@dataclass(frozen=True)
class Peer:
    name: str
    address: str | None
    asn: int | None
    config_ref: str | None  # peerConfigRef.name
    path: str  # e.g. spec.bgpInstances[0].peers[0]
    auto_discovery: bool = False  # the peer's address comes from autoDiscovery (default gateway)


@dataclass(frozen=True)
class Instance:
    name: str
    local_asn: int | None
    local_port: int | None
    peers: tuple[Peer, ...]
    path: str


@dataclass(frozen=True)
class ClusterConfig:
    doc: Doc
    node_selector: dict | None  # None: absent (every node)
    instances: tuple[Instance, ...]

    @property
    def name(self) -> str:
        return self.doc.name

    @classmethod
    def from_doc(cls, doc: Doc) -> "ClusterConfig":
        spec = doc.spec
        instances = []
        for i, raw in enumerate(as_seq(spec.get("bgpInstances"))):
            inst = as_dict(raw)
            peers = []
            for j, rp in enumerate(as_seq(inst.get("peers"))):
                p = as_dict(rp)
                peers.append(
                    Peer(
                        name=str(p.get("name", "")),
                        address=str(p["peerAddress"]) if p.get("peerAddress") else None,
                        asn=as_int(p.get("peerASN")),
                        config_ref=as_dict(p.get("peerConfigRef")).get("name") or None,
                        path=f"spec.bgpInstances[{i}].peers[{j}]",
                        auto_discovery="autoDiscovery" in p,
                    )
                )
            instances.append(
                Instance(
                    name=str(inst.get("name")),
                    local_asn=as_int(inst.get("localASN")),
                    local_port=as_int(inst.get("localPort")) or None,
                    peers=tuple(peers),
                    path=f"spec.bgpInstances[{i}]",
                )
            )
        selector = spec.get("nodeSelector")
        return cls(doc=doc, node_selector=selector if isinstance(selector, dict) else None, instances=tuple(instances))


@dataclass(frozen=True)
class AdvertEntry:
    type: str  # advertisementType
    service_addresses: tuple[str, ...]  # service.addresses
    selector: dict | None  # None: absent, or not a mapping (see raw_selector)
    index: int
    raw_selector: object = None  # as written


@dataclass(frozen=True)
class Advertisement:
    doc: Doc
    entries: tuple[AdvertEntry, ...]

    @property
    def name(self) -> str:
        return self.doc.name

    @property
    def labels(self) -> dict:
        return self.doc.labels

    @classmethod
    def from_doc(cls, doc: Doc) -> "Advertisement":
        entries = []
        for i, raw in enumerate(as_seq(doc.spec.get("advertisements"))):
            e = as_dict(raw)
            selector = e.get("selector")
            entries.append(
                AdvertEntry(
                    type=str(e.get("advertisementType", "")),
                    service_addresses=tuple(str(a) for a in as_seq(as_dict(e.get("service")).get("addresses"))),
                    selector=selector if isinstance(selector, dict) else None,
                    index=i,
                    raw_selector=selector,
                )
            )
        return cls(doc=doc, entries=tuple(entries))


@dataclass
class Bgp:
    """Every BGP resource of a rendered directory."""

    cluster_configs: list[ClusterConfig]
    peer_configs: dict[str, PeerConfig]
    advertisements: list[Advertisement]

    @classmethod
    def read(cls, rendered: Rendered) -> "Bgp":
        return cls(
            cluster_configs=[ClusterConfig.from_doc(d) for d in rendered.of_kind("CiliumBGPClusterConfig")],
            peer_configs={d.name: PeerConfig.from_doc(d) for d in rendered.of_kind("CiliumBGPPeerConfig")},
            advertisements=[Advertisement.from_doc(d) for d in rendered.of_kind("CiliumBGPAdvertisement")],
        )

    def peer_config(self, peer: Peer) -> PeerConfig | None:
        """The peer's config: its referenced PeerConfig, the defaulted one without a ref, None for a missing ref."""
        if peer.config_ref is None:
            return PeerConfig.defaulted(peer.name)
        return self.peer_configs.get(peer.config_ref)

    def gateway_peer_config(self) -> PeerConfig | None:
        """The PeerConfig the first peer that references an existing one uses, else the first PeerConfig."""
        for cc in self.cluster_configs:
            for inst in cc.instances:
                for peer in inst.peers:
                    if peer.config_ref in self.peer_configs:
                        return self.peer_configs[peer.config_ref]
        return next(iter(self.peer_configs.values()), None)


# ----------------------------------------------------------------------------- Envoy (CCEC)
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
TCP_PROXY_TYPE = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
DEFAULT_TCP_IDLE = Duration.parse("3600s")  # Envoy tcp_proxy idle_timeout default: 1h
DEFAULT_CONNECT_TIMEOUT = Duration.parse("5s")  # Envoy cluster connect_timeout default: 5s
DEFAULT_NO_TRAFFIC_INTERVAL = Duration.parse("60s")


@dataclass(frozen=True)
class HealthCheck:
    """An Envoy active health check (the inventory's and a CCEC cluster's)."""

    timeout: Duration
    interval: Duration
    unhealthy_threshold: int
    healthy_threshold: int
    interval_jitter: Duration | None = None
    no_traffic_interval: Duration | None = None
    kind: str = "tcp"


@dataclass(frozen=True)
class Cluster:
    name: str
    connect_timeout: Duration
    lb_policy: str
    health_check: HealthCheck | None
    outlier_consecutive_local_failures: int | None = None
    static_endpoints: tuple[tuple[str, int], ...] = ()
    eds: bool = True


@dataclass(frozen=True)
class Listener:
    name: str
    cluster: str | None
    idle_timeout_written: Duration | None  # None: not in the resource (Envoy's default applies)

    @property
    def idle_timeout(self) -> Duration:
        return self.idle_timeout_written or DEFAULT_TCP_IDLE


@dataclass
class EnvoyConfig:
    """One CCEC/CEC after Cilium's parsing: what survived and what was dropped, and why."""

    doc: Doc
    bindings: list[dict]
    listeners: dict[str, Listener] = field(default_factory=dict)
    clusters: dict[str, Cluster] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)  # resource name -> reason

    @property
    def name(self) -> str:
        return self.doc.name

    def first_health_check(self) -> tuple[Cluster, HealthCheck] | None:
        for cluster in self.clusters.values():
            if cluster.health_check is not None:
                return cluster, cluster.health_check
        return None

    def idle_timeout(self) -> Duration | None:
        """The first tcp_proxy listener's idle_timeout as written (None when no listener sets one)."""
        for listener in self.listeners.values():
            if listener.idle_timeout_written is not None:
                return listener.idle_timeout_written
        return None


def validate_resource(resource: dict) -> str | None:
    """None when protojson would accept the resource's Durations, else Cilium's log reason."""
    for path, _key, text in find_durations(resource):
        try:
            Duration.parse(text)
        except DurationError as exc:
            return f"Ignoring invalid CiliumEnvoyConfig JSON: {exc} (at {path})"
    return None


def _dur(value: object, default: Duration) -> Duration:
    return default if value is None else Duration.parse(value)


def _get(d: dict, snake: str, default: Any = None) -> Any:
    camel = "".join([snake.split("_")[0]] + [w.title() for w in snake.split("_")[1:]])
    return d.get(snake, d.get(camel, default))


def _health_check(raw: list[dict]) -> HealthCheck | None:
    for hc in raw or []:
        kind = "tcp" if ("tcp_health_check" in hc or "tcpHealthCheck" in hc) else "other"
        zero = Duration.parse("0s")
        return HealthCheck(
            interval=_dur(_get(hc, "interval"), zero),
            timeout=_dur(_get(hc, "timeout"), zero),
            unhealthy_threshold=int(_get(hc, "unhealthy_threshold", 1) or 1),
            healthy_threshold=int(_get(hc, "healthy_threshold", 1) or 1),
            interval_jitter=_dur(_get(hc, "interval_jitter"), zero) if _get(hc, "interval_jitter") else None,
            no_traffic_interval=_dur(_get(hc, "no_traffic_interval"), DEFAULT_NO_TRAFFIC_INTERVAL),
            kind=kind,
        )
    return None


def _static_endpoints(cluster: dict) -> tuple[tuple[str, int], ...]:
    out = []
    for group in (_get(cluster, "load_assignment") or {}).get("endpoints") or []:
        for lb in _get(group, "lb_endpoints") or []:
            sock = ((lb.get("endpoint") or {}).get("address") or {}).get("socket_address") or {}
            if sock.get("address"):
                out.append((str(sock["address"]), int(_get(sock, "port_value", 0) or 0)))
    return tuple(out)


def parse_cluster(resource: dict) -> Cluster:
    outlier = _get(resource, "outlier_detection") or {}
    failures = _get(outlier, "consecutive_local_origin_failure")
    return Cluster(
        name=str(resource.get("name")),
        connect_timeout=_dur(_get(resource, "connect_timeout"), DEFAULT_CONNECT_TIMEOUT),
        lb_policy=str(_get(resource, "lb_policy", "ROUND_ROBIN")),
        health_check=_health_check(_get(resource, "health_checks") or []),
        outlier_consecutive_local_failures=int(failures) if failures is not None else None,
        static_endpoints=_static_endpoints(resource),
        eds=str(resource.get("type", "EDS")) == "EDS",
    )


def parse_listener(resource: dict) -> Listener:
    for chain in _get(resource, "filter_chains") or []:
        for flt in chain.get("filters") or []:
            typed = _get(flt, "typed_config") or {}
            if typed.get("@type") == TCP_PROXY_TYPE:
                idle = _get(typed, "idle_timeout")
                return Listener(
                    name=str(resource.get("name")),
                    cluster=typed.get("cluster"),
                    idle_timeout_written=None if idle is None else Duration.parse(idle),
                )
    return Listener(name=str(resource.get("name")), cluster=None, idle_timeout_written=None)


def parse_envoy_config(doc: Doc) -> EnvoyConfig:
    config = EnvoyConfig(doc=doc, bindings=[as_dict(b) for b in as_seq(doc.spec.get("services"))])
    for index, raw in enumerate(as_seq(doc.spec.get("resources"))):
        resource = as_dict(raw)
        name = str(resource.get("name", f"resources[{index}]"))
        reason = validate_resource(resource)
        if reason:
            config.dropped[name] = reason
            continue
        kind = resource.get("@type")
        if kind == CLUSTER_TYPE:
            config.clusters[name] = parse_cluster(resource)
        elif kind == LISTENER_TYPE:
            config.listeners[name] = parse_listener(resource)
    return config


def envoy_configs(rendered: Rendered) -> list[EnvoyConfig]:
    return [
        parse_envoy_config(d)
        for d in rendered.of_kind("CiliumClusterwideEnvoyConfig") + rendered.of_kind("CiliumEnvoyConfig")
    ]
