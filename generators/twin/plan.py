"""``plan_twin(rendered_dir)``: everything each twin node runs, and why, from a rendered directory only."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from generators import pki
from generators.in_container import DIR as IN_CONTAINER
from generators.readback.cilium import Bgp, EnvoyConfig, envoy_configs, pools
from generators.readback.k3s import K3sNode, read_nodes
from generators.readback.rendered import Rendered, load_rendered
from generators.readback.services import TRAEFIK_SOURCE, Service, read_services

from .bgp import Advertisement, NodeBgp, evaluate_advertisements, plan_bgp
from .envoy import Frontend, frontends_for_node
from .gobgp import GoBgpConfigError, GoBgpInstance, render_instance
from .haproxy import render_haproxy
from .lbipam import Allocation, allocate
from .scope import refuse_outside

TWIN_BIN = "/opt/twin"
TWIN_ETC = "/etc/twin"
TWIN_LOG = "/var/log/twin"
PKI_DIR = f"{TWIN_ETC}/pki"
HAPROXY_CFG = f"{TWIN_ETC}/haproxy.cfg"
SCRIPTS = ("twinrun.py", "standin_common.py", "standin_apiserver.py", "standin_traefik.py")
APISERVER_PORT = 6443
READY_TIMEOUT_S = "30"


@dataclass
class NodeVerdict:
    node: str
    advertised: bool
    peers: list[str] = field(default_factory=list)  # peer names it is advertised to
    why_not: list[str] = field(default_factory=list)


@dataclass
class ServiceExplanation:
    service: str  # namespace/name
    type: str
    source: str
    labels: dict[str, str]
    ips: tuple[str, ...]
    ip_reason: str  # how the IP was chosen, or why there is none
    nodes: dict[str, NodeVerdict] = field(default_factory=dict)

    def advertising_nodes(self) -> list[str]:
        return sorted(n for n, v in self.nodes.items() if v.advertised)

    def lines(self) -> list[str]:
        """Human evidence, one line per fact (what ``verify`` prints)."""
        ip = ", ".join(self.ips) if self.ips else f"no IP ({self.ip_reason})"
        out = [f"Service {self.service} [{self.type}] IP {ip}"]
        for name in sorted(self.nodes):
            v = self.nodes[name]
            if v.advertised:
                out.append(f"  {name}: advertised to {', '.join(v.peers)}")
            else:
                out.append(f"  {name}: not advertised: " + " | ".join(v.why_not or ["(no reason recorded)"]))
        return out


@dataclass
class StandIn:
    name: str  # process name for twinrun
    argv: list[str]
    ready: str  # HOST:PORT


@dataclass
class TwinNode:
    name: str
    ip: str
    labels: dict[str, str]
    tls_san: tuple[str, ...]
    bgp: NodeBgp
    gobgp: list[GoBgpInstance] = field(default_factory=list)
    vips: list[str] = field(default_factory=list)  # addresses to put on lo
    frontends: list[Frontend] = field(default_factory=list)
    haproxy_cfg: str = ""
    traefik_ports: list[tuple[str, int]] = field(default_factory=list)  # (VIP, port) the Traefik stand-in binds
    k3s_version: str = ""

    @property
    def bgp_selected(self) -> bool:
        return self.bgp.selected

    def route_commands(self) -> list[list[str]]:
        return [argv for inst in self.gobgp for argv in inst.route_argv()]

    def standins(self) -> list[StandIn]:
        run = ["python3"]
        out = [
            StandIn(
                "apiserver",
                run
                + [
                    f"{TWIN_BIN}/standin_apiserver.py",
                    "--bind",
                    self.ip,
                    "--port",
                    str(APISERVER_PORT),
                    "--cert",
                    f"{PKI_DIR}/apiserver.crt",
                    "--key",
                    f"{PKI_DIR}/apiserver.key",
                    "--node",
                    self.name,
                    "--k3s-version",
                    self.k3s_version,
                    "--log",
                    f"{TWIN_LOG}/apiserver-requests.log",
                ],
                f"{self.ip}:{APISERVER_PORT}",
            )
        ]
        for vip, port in self.traefik_ports:
            out.append(
                StandIn(
                    f"traefik-{vip}-{port}",
                    run
                    + [
                        f"{TWIN_BIN}/standin_traefik.py",
                        "--bind",
                        vip,
                        "--port",
                        str(port),
                        "--node",
                        self.name,
                        "--log",
                        f"{TWIN_LOG}/traefik-{vip}-{port}-requests.log",
                    ],
                    f"{vip}:{port}",
                )
            )
        return out

    def _twinrun(self, name: str, argv: list[str], ready: str | None) -> list[str]:
        cmd = ["python3", f"{TWIN_BIN}/twinrun.py", "start", name]
        if ready:
            cmd += ["--ready-tcp", ready, "--timeout", READY_TIMEOUT_S]
        return cmd + ["--"] + argv

    def processes(self) -> list[str]:
        """Names of the node's long-running processes (for ``twinrun.py stop|kill|status NAME``)."""
        names = [f"gobgpd-{g.instance}" for g in self.gobgp]
        if self.haproxy_cfg and any(fe.listener for fe in self.frontends):
            names.append("haproxy")
        return names + [s.name for s in self.standins()]

    def start_commands(self) -> list[list[str]]:
        """Idempotent commands, in order, that bring the node to its planned state (run with docker exec)."""
        cmds: list[list[str]] = [["mkdir", "-p", TWIN_LOG, "/run/twin"]]
        # Cilium puts no VIP on an interface; with the VIPs on lo, keep the node from answering ARP for them.
        cmds.append(
            [
                "python3",
                f"{TWIN_BIN}/twinrun.py",
                "sysctl",
                "net.ipv4.conf.all.arp_ignore=1",
                "net.ipv4.conf.all.arp_announce=2",
            ]
        )
        cmds += [["ip", "addr", "replace", f"{vip}/32", "dev", "lo"] for vip in self.vips]
        for inst in self.gobgp:
            cmds.append(self._twinrun(f"gobgpd-{inst.instance}", inst.daemon_argv(), f"127.0.0.1:{inst.api_port}"))
            cmds += inst.route_argv()
        # stand-ins before the proxy, so that its first health checks find the local apiserver up
        for standin in self.standins():
            cmds.append(self._twinrun(standin.name, standin.argv, standin.ready))
        if "haproxy" in self.processes():
            first = next(fe for fe in self.frontends if fe.listener)
            cmds.append(self._twinrun("haproxy", ["haproxy", "-db", "-f", HAPROXY_CFG], f"{first.vip}:{first.port}"))
        return cmds

    def restart_commands(self, process: str) -> list[list[str]]:
        """Stop and start one process (drills); routes are re-injected after a gobgpd restart."""
        starts = [c for c in self.start_commands() if len(c) > 4 and c[2] == "start" and c[3] == process]
        if not starts:
            raise KeyError(f"{self.name} has no process {process!r}; it has {', '.join(self.processes())}")
        cmds = [["python3", f"{TWIN_BIN}/twinrun.py", "stop", process], starts[0]]
        for inst in self.gobgp:
            if process == f"gobgpd-{inst.instance}":
                cmds += inst.route_argv()
        return cmds

    def files(self, pki_dir: str | Path) -> dict[str, bytes]:
        """Container path -> content. Creates/reuses the lab CA and this node's cert in ``pki_dir``."""
        out: dict[str, bytes] = {f"{TWIN_BIN}/{name}": (IN_CONTAINER / name).read_bytes() for name in SCRIPTS}
        for inst in self.gobgp:
            out[inst.config_path] = inst.toml.encode()
        if self.haproxy_cfg:
            out[HAPROXY_CFG] = self.haproxy_cfg.encode()
        cert = pki.ensure_node_cert(pki_dir, self.name, self.tls_san)
        out[f"{PKI_DIR}/ca.crt"] = cert.ca_path.read_bytes()
        out[f"{PKI_DIR}/apiserver.crt"] = cert.cert_path.read_bytes()
        out[f"{PKI_DIR}/apiserver.key"] = cert.key_path.read_bytes()
        return out


@dataclass
class TwinPlan:
    nodes: dict[str, TwinNode]
    services: dict[str, ServiceExplanation]
    expected_next_hops: dict[str, set[str]]  # VIP -> node IPs that advertise it
    advertisements: list[Advertisement]
    envoy_configs: list[EnvoyConfig]
    problems: list[str]

    def explain(self) -> list[str]:
        return [line for key in sorted(self.services) for line in self.services[key].lines()]


def _explanations(
    services: list[Service],
    allocations: dict[str, Allocation],
    nodes: list[K3sNode],
    adverts: list[Advertisement],
    why_not: dict[str, dict[str, list[str]]],
) -> dict[str, ServiceExplanation]:
    out: dict[str, ServiceExplanation] = {}
    for svc in services:
        alloc = allocations[svc.key]
        exp = ServiceExplanation(
            service=svc.key,
            type=svc.type,
            source=svc.source,
            labels=dict(svc.labels),
            ips=alloc.ips,
            ip_reason=alloc.reason,
        )
        for node in nodes:
            peers = sorted({a.peer for a in adverts if a.service == svc.key and a.node == node.name})
            exp.nodes[node.name] = NodeVerdict(
                node=node.name, advertised=bool(peers), peers=peers, why_not=why_not[svc.key][node.name]
            )
        out[svc.key] = exp
    return out


def _traefik_ports(services: list[Service], allocations: dict[str, Allocation], node: str) -> list[tuple[str, int]]:
    out = []
    for svc in services:
        if svc.source.startswith(TRAEFIK_SOURCE) and any(ep.node_name == node for ep in svc.endpoints):
            for vip in allocations[svc.key].ips:
                out += [(vip, p.port) for p in svc.ports if p.name == "web"]
    return out


def plan_rendered(rendered: Rendered, k3s_version: str = "", traefik_chart_version: str | None = None,
                  scoped: bool = True) -> TwinPlan:
    """The plan; with ``scoped`` (always, but for the differential corpus's record) files outside what the twin
    decides as Cilium does raise :class:`~generators.twin.scope.OutsideTwin`."""
    all_nodes, problems = read_nodes(rendered)
    nodes = [n for n in all_nodes if n.ip]
    problems += [
        f"{n.file}: no IPv4 node-ip; the twin needs each node's address (router-id, stand-in apiserver). "
        f"Add `node-ip: <address>` to the node's k3s config"
        for n in all_nodes
        if not n.ip
    ]
    services, svc_problems = read_services(rendered, nodes, traefik_chart_version)
    if scoped:
        refuse_outside(rendered, services, nodes)  # where the twin would not decide as Cilium does
    allocations, pool_problems = allocate(pools(rendered), services)
    resources = Bgp.read(rendered)
    bgp = plan_bgp(resources, nodes)
    envoy = envoy_configs(rendered)
    redirected = frozenset(f"{b.get('namespace') or 'default'}/{b.get('name')}" for c in envoy for b in c.bindings)
    adverts, why_not = evaluate_advertisements(resources, bgp, services, allocations, redirected)
    problems += svc_problems + pool_problems
    for config in envoy:
        problems += [f"CCEC {config.name}: resource {name} dropped: {why}" for name, why in config.dropped.items()]
    by_key = {s.key: s for s in services}
    vips = {k: a.ips for k, a in allocations.items()}
    twin_nodes: dict[str, TwinNode] = {}
    for node in nodes:
        tn = TwinNode(
            name=node.name,
            ip=str(node.ip),
            labels=node.labels,
            tls_san=node.tls_san,
            bgp=bgp[node.name],
            k3s_version=k3s_version,
        )
        for index, inst in enumerate(bgp[node.name].instances if bgp[node.name].selected else []):
            try:
                tn.gobgp.append(render_instance(node.name, index, inst, adverts))
            except GoBgpConfigError as exc:
                problems.append(f"node {node.name}: {exc}")
        frontends, fe_problems = frontends_for_node(envoy, by_key, vips, node.name)
        problems += [p for p in fe_problems if p not in problems]
        tn.frontends = frontends
        if frontends:
            tn.haproxy_cfg = render_haproxy(frontends, node.name)
        tn.traefik_ports = _traefik_ports(services, allocations, node.name)
        tn.vips = sorted({ip for a in allocations.values() for ip in a.ips if ":" not in ip})
        twin_nodes[node.name] = tn
    next_hops: dict[str, set[str]] = {ip: set() for a in allocations.values() for ip in a.ips}
    ip_of = {n.name: str(n.ip) for n in nodes}
    for adv in adverts:
        next_hops[adv.prefix.split("/")[0]].add(ip_of[adv.node])
    return TwinPlan(
        nodes=twin_nodes,
        services=_explanations(services, allocations, nodes, adverts, why_not),
        expected_next_hops=next_hops,
        advertisements=adverts,
        envoy_configs=envoy,
        problems=problems,
    )


def plan_twin(rendered_dir: str | Path, k3s_version: str = "", traefik_chart_version: str | None = None,
              scoped: bool = True) -> TwinPlan:
    """The twin lab's plan for a rendered directory (``invoke gen`` output or hand-written, same layout)."""
    return plan_rendered(
        load_rendered(rendered_dir), k3s_version=k3s_version, traefik_chart_version=traefik_chart_version,
        scoped=scoped,
    )
