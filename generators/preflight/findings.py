"""Findings, the check registry (id, severity, one-line example) and the report with its two outputs."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

ERROR = "error"
WARNING = "warning"
JSON_SCHEMA_ID = "k3s-bgp-lab/preflight/v1"


@dataclass(frozen=True)
class Check:
    id: str
    severity: str
    title: str
    example: str  # one line: the mistake and what it does


@dataclass(frozen=True, order=True)
class Finding:
    file: str  # relative to the checked directory
    document: str  # Kind/namespace/name, "k3s:<node>", "helm:cilium", "helm:platform" or "router bgp <asn>"
    path: str  # field path in that document, or "line N: <text>" for frr.conf
    id: str
    severity: str
    message: str  # what will happen at runtime
    fix: str

    def to_dict(self) -> dict:
        return {k: v for k, v in sorted(asdict(self).items())}


CHECKS: dict[str, Check] = {}


def _check(id_: str, severity: str, title: str, example: str) -> None:
    CHECKS[id_] = Check(id_, severity, title, example)


# Input
_check(
    "PREFLIGHT-FILE-MISSING",
    WARNING,
    "a file of the layout is missing; the checks that need it are skipped",
    "no frr/frr.conf: the gateway checks do not run",
)
_check(
    "K8S-MALFORMED",
    ERROR,
    "metadata, spec or a list/mapping field the checks read has the wrong YAML shape",
    "`spec:` followed by `- type: LoadBalancer`: kubectl refuses the document",
)
_check(
    "K8S-NOT-STRING",
    ERROR,
    "a label or annotation value is not a string",
    "`cec.cilium.io/use-original-source-address: false` (unquoted): kubectl apply refuses the document",
)
_check(
    "K8S-SELECTOR-INVALID",
    ERROR,
    "a label selector the apiserver rejects",
    "`operator: exists` (lower case) in a CiliumBGPAdvertisement",
)
_check(
    "CILIUM-KPR-VALUE",
    ERROR,
    "kubeProxyReplacement has a value Cilium 1.19 does not know",
    "`kubeProxyReplacement: strict`: a removed value, not the replacement you meant",
)
# Envoy (CCEC)
_check(
    "CCEC-ETP-LOCAL",
    ERROR,
    "a Service bound by a CCEC has externalTrafficPolicy: Local",
    "kube-apiserver-bgp with `externalTrafficPolicy: Local`: EDS empty on nodes without a local backend",
)
_check(
    "CCEC-DURATION",
    ERROR,
    "a protobuf Duration in CCEC resources[] is not `<n>s`",
    "`interval_jitter: 100ms`: Cilium drops the whole Cluster resource",
)
_check(
    "CCEC-ORIGINAL-SOURCE",
    ERROR,
    "a hand-written CCEC lacks `cec.cilium.io/use-original-source-address: \"false\"`",
    "no annotation: multiplexed kubectl streams tear each other down",
)
_check(
    "CCEC-KPR",
    ERROR,
    "a CCEC exists while kubeProxyReplacement is not true",
    "`kubeProxyReplacement: false` with a CCEC: its services binding is a silent no-op",
)
_check(
    "CCEC-ENVOYCONFIG",
    ERROR,
    "a CCEC exists while envoyConfig.enabled is not true",
    "`envoyConfig.enabled: false`: the CCEC CRD and controller are not installed",
)
# BGP wiring
_check(
    "BGP-CONTROLPLANE-OFF",
    ERROR,
    "bgpControlPlane.enabled is off while BGP resources exist",
    "`bgpControlPlane.enabled: false` with a CiliumBGPClusterConfig: nothing peers",
)
_check(
    "BGP-SERVICE-NOT-ADVERTISED",
    ERROR,
    "a LoadBalancer Service that no CiliumBGPAdvertisement selects",
    "a Service without `app.kubernetes.io/name`: its VIP never reaches the BGP wire",
)
_check(
    "BGP-PEERCONFIG-NO-ADVERTISEMENT",
    ERROR,
    "a PeerConfig family whose advertisement selector matches no Advertisement",
    "`advertisements: {matchLabels: {advertise: bgpp}}`: the peer gets no route",
)
_check(
    "BGP-PEERCONFIG-MISSING",
    ERROR,
    "a ClusterConfig peer references a PeerConfig that does not exist",
    "`peerConfigRef: {name: ucg-peer}` with only `ucg-fiber-peer` defined",
)
_check(
    "BGP-NODESELECTOR-NO-NODE",
    ERROR,
    "a ClusterConfig nodeSelector matches no node of the k3s configs",
    "`instance-type: baremetal` vs the node label `bare-metal`: no node peers",
)
_check(
    "BGP-NODESELECTOR-PARTIAL",
    WARNING,
    "a node that no ClusterConfig selects, while others are selected",
    "cat03 lacks the node-label: cat03 never peers, its next-hop is missing",
)
# Gateway against cluster
_check(
    "GW-NO-ROUTER-BGP",
    ERROR,
    "frr.conf has no `router bgp` block",
    "frr.conf holds only comments: the gateway never peers",
)
_check(
    "GW-REMOTE-AS",
    ERROR,
    "the gateway's remote-as for a node differs from Cilium's localASN",
    "`neighbor k3s-nodes remote-as 65001` vs `localASN: 65000`: OPEN rejected, Bad Peer AS",
)
_check(
    "GW-PEER-ASN",
    ERROR,
    "Cilium's peerASN differs from the gateway's ASN",
    "`peerASN: 64513` vs `router bgp 64512`: OPEN rejected, Bad Peer AS",
)
_check(
    "GW-PEER-ADDRESS",
    ERROR,
    "Cilium's peerAddress differs from the gateway's address",
    "`peerAddress: 10.31.0.2` vs `bgp router-id 10.31.0.1`: the sessions never come up",
)
_check(
    "GW-NEIGHBOR-MISSING",
    ERROR,
    "a node is not a neighbor of the gateway",
    "no `neighbor 10.31.0.132`: FRR refuses cat03's session, one next-hop missing",
)
_check(
    "GW-NEIGHBOR-EXTRA",
    WARNING,
    "a gateway neighbor is not a node",
    "`neighbor 10.31.0.150 peer-group k3s-nodes` with no such node: a session that stays Active",
)
_check(
    "GW-EBGP-POLICY",
    ERROR,
    "eBGP without `no bgp ebgp-requires-policy` and without an inbound route-map",
    "no `no bgp ebgp-requires-policy`: FRR accepts no route from the nodes",
)
_check(
    "GW-MAXPATHS",
    ERROR,
    "`maximum-paths 1`: no ECMP",
    "`maximum-paths 1`: each VIP has one next-hop instead of one per node",
)
_check(
    "GW-MULTIPATH-RELAX",
    ERROR,
    "nodes with different ASNs and no `bgp bestpath as-path multipath-relax`",
    "cat03 in AS 65001, no multipath-relax: FRR uses only the best AS path, no ECMP",
)
_check(
    "GW-AF-NOT-ACTIVATED",
    ERROR,
    "the ipv4 unicast family is not activated for the nodes",
    "`no bgp default ipv4-unicast` without `neighbor k3s-nodes activate`: no route is exchanged",
)
# Addresses
_check(
    "ADDR-VIP-OUTSIDE-POOL",
    ERROR,
    "a pinned VIP outside every pool that may serve the Service",
    "`lbipam.cilium.io/ips: 10.31.0.100` with pool 10.31.0.80/28: the Service stays <pending>",
)
_check(
    "ADDR-VIP-DUPLICATE",
    ERROR,
    "the same pinned VIP on two Services without a common sharing key",
    "Traefik pinned to 10.31.0.80 as well: one of the two stays <pending>",
)
_check(
    "ADDR-VIP-NET-BCAST",
    ERROR,
    "a pinned VIP is the network or broadcast address of a pool with allowFirstLastIPs: No",
    "10.31.0.80 pinned in 10.31.0.80/28 with `allowFirstLastIPs: \"No\"`: never allocated",
)
_check(
    "ADDR-POOL-NODE-OVERLAP",
    ERROR,
    "a pool contains a node's or the gateway's address",
    "block 10.31.0.160/28 contains cat02 (10.31.0.161): a VIP may be handed out that a node owns",
)
_check(
    "ADDR-TLS-SAN",
    ERROR,
    "the apiserver VIP or its DNS name is missing from a node's tls-san",
    "cat02 without kube.dev.ber1.clustername.io: x509 errors when the VIP lands on cat02",
)
_check(
    "ADDR-EPS-ADDRESSES",
    ERROR,
    "the apiserver EndpointSlice addresses are not the node set",
    "10.31.0.133 instead of 10.31.0.132: Envoy health-checks a host that is not an apiserver",
)
_check(
    "ADDR-EPS-NODENAME",
    ERROR,
    "an EndpointSlice nodeName is not the node that owns the address",
    "`nodeName: cat3`: Cilium cannot correlate the backend to a node",
)
# Timers
_check("TIMER-HOLD", ERROR, "holdTimeSeconds below 3", "`holdTimeSeconds: 2`: rejected by the CRD (minimum 3)")
_check(
    "TIMER-KEEPALIVE",
    WARNING,
    "keepAliveTimeSeconds above holdTimeSeconds/3",
    "hold 15, keepalive 10: one lost keepalive drops the session",
)
_check(
    "TIMER-GR-COST",
    WARNING,
    "graceful restart keeps a silently lost node in the ECMP group for hold + restart seconds",
    "hold 15, restart 120, FRR 8.4: up to 135 s of lost new flows after a silent node loss",
)
# k3s
_check(
    "K3S-NODE-IP",
    WARNING,
    "a k3s config without node-ip; checks that need the node set are skipped",
    "no `node-ip` on cat03: neighbor and EndpointSlice checks skipped",
)
_check(
    "K3S-CLUSTER-KEYS",
    ERROR,
    "a cluster-wide k3s key differs between servers",
    "`cluster-cidr: 10.52.0.0/16` on cat02 only: cat02 fails to join (critical configuration mismatch)",
)
_check(
    "K3S-FLANNEL",
    ERROR,
    "flannel-backend is not none while Cilium is the CNI",
    "`flannel-backend: vxlan`: two CNIs fight over the pod network",
)
_check(
    "K3S-NETWORK-POLICY",
    WARNING,
    "k3s's network policy controller is on while Cilium is the CNI",
    "no `disable-network-policy: true`: kube-router programs iptables next to Cilium",
)
_check(
    "K3S-SERVICELB",
    ERROR,
    "servicelb is not disabled",
    "`disable: [traefik, metrics-server]`: klipper-lb competes with Cilium LB-IPAM",
)
_check(
    "K3S-CLUSTER-INIT",
    ERROR,
    "zero or several servers initialize the cluster",
    "`cluster-init: true` and no `server:` on cat02 too: two separate clusters",
)
_check(
    "K3S-KUBE-PROXY-ORDER",
    ERROR,
    "disable-kube-proxy while Cilium's kube-proxy replacement is off",
    "`disable-kube-proxy: true` with `kubeProxyReplacement: false`: no Service routing at all",
)


@dataclass(frozen=True)
class FrrVersionInfo:
    value: str  # "" when unknown
    source: str  # "--frr-version", "frr/frr.conf line N", or "unknown"


@dataclass
class Report:
    source: str  # what was checked, as given (--dir or --inventory argument)
    files: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    frr_version: FrrVersionInfo = FrrVersionInfo("", "unknown")

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    def ids(self, severity: str | None = None) -> set[str]:
        return {f.id for f in self.findings if severity is None or f.severity == severity}

    def exit_code(self, strict: bool = False) -> int:
        if self.errors or (strict and self.warnings):
            return 1
        return 0

    def to_json(self) -> str:
        payload = {
            "schema": JSON_SCHEMA_ID,
            "source": self.source,
            "files": sorted(self.files),
            "frr_version": {"value": self.frr_version.value, "source": self.frr_version.source},
            "summary": {"errors": len(self.errors), "warnings": len(self.warnings)},
            "findings": [f.to_dict() for f in sorted(self.findings)],
        }
        return json.dumps(payload, indent=2, sort_keys=True)

    def render_text(self) -> str:
        out: list[str] = []
        by_file: dict[str, list[Finding]] = {}
        for f in sorted(self.findings):
            by_file.setdefault(f.file, []).append(f)
        for file, findings in by_file.items():
            out.append(file)
            for f in findings:
                out.append(f"  {f.severity:<7} {f.id}  {f.document}  {f.path}")
                out.append(f"          {f.message}")
                out.append(f"          fix: {f.fix}")
            out.append("")
        out.append(
            f"{_plural(len(self.errors), 'error')}, {_plural(len(self.warnings), 'warning')} "
            f"in {_plural(len(self.files), 'file')} ({self.source})"
        )
        return "\n".join(out)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")
