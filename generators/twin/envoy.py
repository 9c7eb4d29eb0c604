"""CiliumClusterwideEnvoyConfig (and namespaced CiliumEnvoyConfig) as Cilium 1.19 feeds it to cilium-envoy.

- Each ``resources[]`` entry is parsed with protojson; one invalid entry (e.g. a Duration written
  ``100ms``) is dropped on its own with only an agent log line, the other resources stay. A listener
  whose cluster was dropped accepts connections and closes them.
- ``services[]`` redirects the Service's frontends (all ports, or the listed ``ports``) to the named
  listener, and syncs the Service's endpoints into the EDS cluster named ``<namespace>/<name>`` (or
  ``<namespace>/<name>:<port>``). The sync passes no frontend to the load-balancer writer, so with
  ``externalTrafficPolicy: Local`` only backends whose ``nodeName`` is the local node remain (empty
  nodeName kept) -- on a node without a local endpoint the cluster is empty.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from generators.rendered import Doc

from .durations import DurationError, parse_proto_duration
from .services import Endpoint, ServiceInfo

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
TCP_PROXY_TYPE = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
DEFAULT_TCP_IDLE = Decimal(3600)  # Envoy tcp_proxy idle_timeout default: 1h
DEFAULT_CONNECT_TIMEOUT = Decimal(5)  # Envoy cluster connect_timeout default: 5s
DEFAULT_NO_TRAFFIC_INTERVAL = Decimal(60)

# google.protobuf.Duration fields of the messages a CCEC carries for an L4 proxy (snake_case and JSON names).
_DURATION_FIELDS = {
    "connect_timeout", "idle_timeout", "timeout", "interval", "interval_jitter", "initial_jitter",
    "no_traffic_interval", "no_traffic_healthy_interval", "unhealthy_interval", "unhealthy_edge_interval",
    "healthy_edge_interval", "base_ejection_time", "max_ejection_time", "max_ejection_time_jitter",
    "max_downstream_connection_duration", "access_log_flush_interval", "cleanup_interval",
    "dns_refresh_rate", "listener_filters_timeout", "per_connection_buffer_limit_bytes_timeout",
    "transport_socket_connect_timeout", "max_connection_duration", "drain_timeout",
}
_DURATION_FIELDS |= {"".join([p[0]] + [w.title() for w in p[1:]]) for p in (f.split("_") for f in _DURATION_FIELDS)}


@dataclass(frozen=True)
class HealthCheck:
    interval: Decimal
    timeout: Decimal
    unhealthy_threshold: int
    healthy_threshold: int
    interval_jitter: Decimal | None = None
    no_traffic_interval: Decimal = DEFAULT_NO_TRAFFIC_INTERVAL
    kind: str = "tcp"


@dataclass(frozen=True)
class Cluster:
    name: str
    connect_timeout: Decimal
    lb_policy: str
    health_check: HealthCheck | None
    outlier_consecutive_local_failures: int | None = None
    static_endpoints: tuple[tuple[str, int], ...] = ()
    eds: bool = True


@dataclass(frozen=True)
class Listener:
    name: str
    cluster: str | None
    idle_timeout: Decimal


@dataclass
class Backend:
    name: str  # nodeName (or address when there is none)
    address: str
    port: int


@dataclass
class Frontend:
    """One Service port redirected to an Envoy listener, as the twin's L4 proxy on one node serves it."""

    config: str  # the CCEC's name
    service: str
    vip: str
    port: int
    listener: Listener | None
    cluster: Cluster | None
    backends: list[Backend] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why the proxy differs from "all endpoints, healthy"

    @property
    def name(self) -> str:
        """A unique HAProxy section name: service, VIP and port."""
        return f"{self.service.replace('/', '_')}_{self.vip.replace(':', '-')}_{self.port}"


@dataclass
class EnvoyConfig:
    """One CCEC/CEC after Cilium's parsing: what survived and what was dropped, and why."""

    name: str
    bindings: list[dict]
    listeners: dict[str, Listener] = field(default_factory=dict)
    clusters: dict[str, Cluster] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)  # resource name -> reason


def _find_durations(value: Any, path: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if key in _DURATION_FIELDS and not isinstance(item, (dict, list)):
                found.append((sub, item))
            else:
                found.extend(_find_durations(item, sub))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_find_durations(item, f"{path}[{index}]"))
    return found


def validate_resource(resource: dict) -> str | None:
    """None when protojson would accept the resource's Durations, else Cilium's log reason."""
    for path, text in _find_durations(resource):
        try:
            parse_proto_duration(text)
        except DurationError as exc:
            return f"Ignoring invalid CiliumEnvoyConfig JSON: {exc} (at {path})"
    return None


def _dur(value: object, default: Decimal) -> Decimal:
    return default if value is None else parse_proto_duration(value)


def _get(d: dict, snake: str, default: Any = None) -> Any:
    camel = "".join([snake.split("_")[0]] + [w.title() for w in snake.split("_")[1:]])
    return d.get(snake, d.get(camel, default))


def _health_check(raw: list[dict]) -> HealthCheck | None:
    for hc in raw or []:
        kind = "tcp" if ("tcp_health_check" in hc or "tcpHealthCheck" in hc) else "other"
        return HealthCheck(
            interval=_dur(_get(hc, "interval"), Decimal(0)), timeout=_dur(_get(hc, "timeout"), Decimal(0)),
            unhealthy_threshold=int(_get(hc, "unhealthy_threshold", 1) or 1),
            healthy_threshold=int(_get(hc, "healthy_threshold", 1) or 1),
            interval_jitter=_dur(_get(hc, "interval_jitter"), Decimal(0)) if _get(hc, "interval_jitter") else None,
            no_traffic_interval=_dur(_get(hc, "no_traffic_interval"), DEFAULT_NO_TRAFFIC_INTERVAL), kind=kind)
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
    return Cluster(name=str(resource.get("name")),
                   connect_timeout=_dur(_get(resource, "connect_timeout"), DEFAULT_CONNECT_TIMEOUT),
                   lb_policy=str(_get(resource, "lb_policy", "ROUND_ROBIN")),
                   health_check=_health_check(_get(resource, "health_checks") or []),
                   outlier_consecutive_local_failures=int(failures) if failures is not None else None,
                   static_endpoints=_static_endpoints(resource),
                   eds=str(resource.get("type", "EDS")) == "EDS")


def parse_listener(resource: dict) -> Listener:
    for chain in _get(resource, "filter_chains") or []:
        for flt in chain.get("filters") or []:
            typed = _get(flt, "typed_config") or {}
            if typed.get("@type") == TCP_PROXY_TYPE:
                return Listener(name=str(resource.get("name")), cluster=typed.get("cluster"),
                                idle_timeout=_dur(_get(typed, "idle_timeout"), DEFAULT_TCP_IDLE))
    return Listener(name=str(resource.get("name")), cluster=None, idle_timeout=DEFAULT_TCP_IDLE)


def parse_envoy_config(doc: Doc) -> EnvoyConfig:
    config = EnvoyConfig(name=doc.name, bindings=list(doc.spec.get("services") or []))
    for index, resource in enumerate(doc.spec.get("resources") or []):
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


def backends_for(svc: ServiceInfo, node: str, port_name: str) -> tuple[list[Backend], list[str]]:
    notes: list[str] = []
    chosen: list[Endpoint] = []
    for ep in svc.endpoints:
        if not ep.ready or ep.terminating:
            continue
        if svc.external_traffic_policy == "Local" and ep.node_name and ep.node_name != node:
            continue
        chosen.append(ep)
    if svc.external_traffic_policy == "Local":
        dropped = [ep.node_name for ep in svc.endpoints if ep.node_name and ep.node_name != node]
        if dropped:
            notes.append(f"externalTrafficPolicy Local: the CCEC endpoint sync keeps only node {node}'s backends "
                         f"(dropped {', '.join(sorted(set(dropped)))})")
    out = []
    for ep in chosen:
        ports = [p.port for p in ep.ports if not port_name or p.name == port_name] or [p.port for p in ep.ports]
        if not ports:
            notes.append(f"endpoint {ep.address} has no port in its EndpointSlice; skipped")
            continue
        out.append(Backend(name=ep.node_name or ep.address, address=ep.address, port=ports[0]))
    return out, notes


def frontends_for_node(configs: list[EnvoyConfig], services: dict[str, ServiceInfo], vips: dict[str, tuple[str, ...]],
                       node: str) -> tuple[list[Frontend], list[str]]:
    """The L4 proxy frontends of one node, plus problems (bindings that point nowhere)."""
    frontends: list[Frontend] = []
    problems: list[str] = []
    for config in configs:
        for binding in config.bindings:
            key = f"{binding.get('namespace') or 'default'}/{binding.get('name')}"
            svc = services.get(key)
            if svc is None:
                problems.append(f"CCEC {config.name} binds Service {key}, which the twin does not know")
                continue
            listener_name = str(binding.get("listener") or "")
            wanted = {int(p) for p in binding.get("ports") or []}
            for sp in svc.ports:
                if wanted and sp.port not in wanted:
                    continue
                for vip in vips.get(key, ()):
                    frontends.append(_frontend(config, svc, sp.port, sp.name, vip, listener_name, node))
    return frontends, problems


def _frontend(config: EnvoyConfig, svc: ServiceInfo, port: int, port_name: str, vip: str, listener_name: str,
              node: str) -> Frontend:
    fe = Frontend(config=config.name, service=svc.key, vip=vip, port=port, listener=None, cluster=None)
    if listener_name in config.dropped:
        fe.notes.append(f"listener {listener_name} was dropped ({config.dropped[listener_name]}): Cilium redirects "
                        f"{vip}:{port} to a listener Envoy does not have; connections fail")
        return fe
    listener = config.listeners.get(listener_name)
    if listener is None:
        fe.notes.append(f"CCEC {config.name} has no listener {listener_name!r}; connections to {vip}:{port} fail")
        return fe
    fe.listener = listener
    cluster_name = listener.cluster or ""
    if cluster_name in config.dropped:
        fe.notes.append(f"cluster {cluster_name} was dropped ({config.dropped[cluster_name]}): listener "
                        f"{listener.name} has no upstream, connections are accepted and closed at once")
        return fe
    cluster = config.clusters.get(cluster_name)
    if cluster is None:
        fe.notes.append(f"listener {listener.name} forwards to cluster {cluster_name!r}, which the CCEC does not "
                        f"define: connections are accepted and closed at once")
        return fe
    fe.cluster = cluster
    if cluster.eds:
        if cluster_name not in (svc.key, f"{svc.key}:{port}"):
            fe.notes.append(f"EDS cluster {cluster_name} is not named after the bound Service ({svc.key}): Cilium "
                            f"fills it with no endpoints")
            return fe
        fe.backends, notes = backends_for(svc, node, port_name)
        fe.notes.extend(notes)
    else:
        fe.backends = [Backend(name=addr, address=addr, port=p) for addr, p in cluster.static_endpoints]
    if not fe.backends and not fe.notes:
        fe.notes.append(f"cluster {cluster_name} has no endpoints on node {node}")
    return fe
