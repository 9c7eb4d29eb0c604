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

from generators.readback.cilium import Cluster, EnvoyConfig, Listener
from generators.readback.services import Endpoint, Service


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


def backends_for(svc: Service, node: str, port_name: str) -> tuple[list[Backend], list[str]]:
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


def frontends_for_node(configs: list[EnvoyConfig], services: dict[str, Service], vips: dict[str, tuple[str, ...]],
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


def _frontend(config: EnvoyConfig, svc: Service, port: int, port_name: str, vip: str, listener_name: str,
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
