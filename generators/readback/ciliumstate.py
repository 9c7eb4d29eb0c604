"""What Cilium's own code decided on one node, read from ``cilium-bgp-host``'s ``/state`` as typed objects.

``cilium-bgp-host`` (k3s_images/cilium/cmd/cilium-bgp-host) runs Cilium 1.19.3's BGP control plane,
load-balancer tables and CiliumEnvoyConfig controller for one lab node; ``/state`` reports:

- ``bgp.instances[].peers[]``: session state and the prefixes advertised to each peer (adj-RIB-out);
- ``loadBalancer.frontends[]``: service, ``address`` (``ip:port/PROTO``, ``/i`` for internal), ``type``,
  ``proxyRedirected`` with ``proxyPort``, and the backends Cilium selected;
- ``envoy.cecs[]``: the CiliumEnvoyConfigs that apply to this node, their ``listenerPorts`` (listener name ->
  proxy port), listeners and clusters as protojson (what Envoy would be given) and, per cluster, the
  endpoints pushed to this node's Envoy (``edsPushed`` false: no ClusterLoadAssignment at all);
- ``envoy.errors[]``: Cilium's own messages about CCECs it rejected.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .cilium import Cluster, Listener, parse_cluster, parse_listener


@dataclass(frozen=True)
class Peer:
    name: str
    address: str
    asn: int
    state: str  # "established", "active", ...
    advertised: tuple[str, ...]  # prefixes, e.g. 10.31.0.80/32

    @property
    def established(self) -> bool:
        return self.state == "established"


@dataclass(frozen=True)
class Backend:
    address: str  # ip
    port: int
    state: str
    node_name: str


@dataclass(frozen=True)
class Frontend:
    service: str  # namespace/name
    address: str  # ip
    port: int
    protocol: str
    type: str  # LoadBalancer, ClusterIP, NodePort, ...
    internal: bool  # the "/i" twin of a frontend (internal traffic policy)
    proxy_redirected: bool
    proxy_port: int | None
    backends: tuple[Backend, ...]


@dataclass(frozen=True)
class EnvoyCluster:
    cluster: Cluster
    eds_pushed: bool  # False: Cilium pushed no ClusterLoadAssignment to this node
    endpoints: tuple[tuple[str, int], ...]  # what this node's Envoy would balance over


@dataclass(frozen=True)
class EnvoyConfig:
    name: str
    listener_ports: dict[str, int]  # listener name -> proxy port
    listeners: dict[str, Listener]
    clusters: dict[str, EnvoyCluster]

    def listener_on(self, proxy_port: int) -> Listener | None:
        for name, port in self.listener_ports.items():
            if port == proxy_port:
                return self.listeners.get(name)
        return None


@dataclass(frozen=True)
class NodeState:
    node: str
    node_ip: str
    peers: tuple[Peer, ...]
    frontends: tuple[Frontend, ...]
    envoy: tuple[EnvoyConfig, ...]
    errors: tuple[str, ...] = field(default=())

    def advertised(self) -> set[str]:
        """Every prefix advertised to an Established peer."""
        return {p for peer in self.peers if peer.established for p in peer.advertised}

    def load_balancer_frontends(self) -> list[Frontend]:
        return [f for f in self.frontends if f.type == "LoadBalancer" and not f.internal]

    def envoy_for(self, frontend: Frontend) -> tuple[EnvoyConfig, Listener, EnvoyCluster | None] | None:
        """The CCEC listener a proxy-redirected frontend goes to, and the cluster that listener forwards to."""
        if not frontend.proxy_redirected or frontend.proxy_port is None:
            return None
        for config in self.envoy:
            listener = config.listener_on(frontend.proxy_port)
            if listener is not None:
                return config, listener, config.clusters.get(listener.cluster or "")
        return None


def _split_address(text: str) -> tuple[str, int, str, bool]:
    """``10.31.0.80:6443/TCP`` (``/i`` suffix: internal) -> (ip, port, protocol, internal)."""
    parts = text.split("/")
    host, _, port = parts[0].rpartition(":")
    return host.strip("[]"), int(port or 0), parts[1] if len(parts) > 1 else "TCP", parts[-1] == "i"


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port or 0)


def parse_state(doc: dict) -> NodeState:
    node = doc.get("node") or {}
    peers = []
    for inst in (doc.get("bgp") or {}).get("instances") or []:
        for p in inst.get("peers") or []:
            peers.append(Peer(name=str(p.get("name", "")), address=str(p.get("address", "")),
                              asn=int(p.get("peerASN") or 0), state=str(p.get("sessionState", "")),
                              advertised=tuple(str(a["prefix"]) for a in p.get("advertised") or [] if a.get("prefix"))))
    frontends = []
    for f in (doc.get("loadBalancer") or {}).get("frontends") or []:
        ip, port, proto, internal = _split_address(str(f.get("address", "")))
        backends = []
        for b in f.get("backends") or []:
            bip, bport, _, _ = _split_address(str(b.get("address", "")))
            backends.append(Backend(bip, bport, str(b.get("state", "")), str(b.get("nodeName") or "")))
        frontends.append(Frontend(service=str(f.get("service", "")), address=ip, port=port, protocol=proto,
                                  type=str(f.get("type", "")), internal=internal,
                                  proxy_redirected=bool(f.get("proxyRedirected")),
                                  proxy_port=int(f["proxyPort"]) if f.get("proxyPort") else None,
                                  backends=tuple(backends)))
    envoy = []
    for c in (doc.get("envoy") or {}).get("cecs") or []:
        listeners = {str(r.get("name")): parse_listener(r) for r in c.get("listeners") or []}
        clusters = {}
        for r in c.get("clusters") or []:
            clusters[str(r.get("name"))] = EnvoyCluster(
                cluster=parse_cluster(r.get("resource") or r), eds_pushed=bool(r.get("edsPushed", True)),
                endpoints=tuple(_endpoint(str(e)) for e in r.get("endpoints") or []))
        envoy.append(EnvoyConfig(name=str(c.get("name", "")), listener_ports={
            str(k).rsplit("/", 1)[-1]: int(v) for k, v in (c.get("listenerPorts") or {}).items()},
            listeners={name.rsplit("/", 1)[-1]: lst for name, lst in listeners.items()}, clusters=clusters))
    errors = tuple(str(e.get("message", "")) + (f": {e['attrs'].get('error')}" if (e.get("attrs") or {}).get("error")
                                                  else "") for e in (doc.get("envoy") or {}).get("errors") or [])
    return NodeState(node=str(node.get("name", "")), node_ip=str(node.get("nodeIPv4", "")), peers=tuple(peers),
                     frontends=tuple(frontends), envoy=tuple(envoy), errors=errors)
