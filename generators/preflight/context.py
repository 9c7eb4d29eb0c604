"""What every check needs, read once from the files: nodes, Services, values, the parsed frr.conf.

Nothing here comes from our inventory model: a user's hand-written directory in the layout works.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from generators.readback.frrconf import EBGP_REQUIRES_POLICY_SINCE, NBIT_SINCE, FrrConfig, RouterBgp, parse_frr
from generators.readback.k3s import K3sNode as Node
from generators.readback.k3s import NodeInputError, read_node
from generators.readback.rendered import (
    CILIUM_BGP,
    CILIUM_VALUES,
    FRR_CONF,
    PLATFORM_VALUES,
    Doc,
    Rendered,
)
from generators.readback.selectors import SelectorError, selector_matches
from generators.readback.services import Service, Vip, service_from_doc, traefik_service
from generators.readback.values import as_bool, cilium_chart_values, get_path
from generators.versions import version_tuple

from .findings import CHECKS, Finding, FrrVersionInfo

CILIUM_DOC = "helm:cilium"
SHARING_KEY = "lbipam.cilium.io/sharing-key"
DNS_ANNOTATION = "external-dns.alpha.kubernetes.io/hostname"
CCEC_KINDS = ("CiliumClusterwideEnvoyConfig", "CiliumEnvoyConfig")
BGP_KINDS = ("CiliumBGPClusterConfig", "CiliumBGPPeerConfig", "CiliumBGPAdvertisement", "CiliumBGPNodeConfigOverride")


@dataclass
class Context:
    rendered: Rendered
    frr: FrrConfig | None
    frr_version: FrrVersionInfo
    nodes: list[Node] = field(default_factory=list)  # from the k3s configs (generators.readback.k3s)
    cilium: dict = field(default_factory=dict)  # Cilium chart values, wherever the file put them
    cilium_prefix: str = ""  # "cilium." when the file nests them under a `cilium:` key
    services: list[Service] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    # -- reporting -------------------------------------------------------------------------------
    def add(self, check_id: str, file: str, document: str, path: str, message: str, fix: str) -> None:
        check = CHECKS[check_id]
        self.findings.append(Finding(file, document, path, check.id, check.severity, message, fix))

    # -- files -----------------------------------------------------------------------------------
    def has_file(self, rel: str) -> bool:
        return rel in self.rendered.files

    @property
    def has_cilium_values(self) -> bool:
        return self.has_file(CILIUM_VALUES)

    @property
    def docs(self) -> list[Doc]:
        """Kubernetes documents whose metadata and spec are mappings (K8S-MALFORMED reports the others)."""
        return [d for d in self.rendered.docs if well_formed(d)]

    def of_kind(self, *kinds: str) -> list[Doc]:
        return [d for d in self.docs if d.kind in kinds]

    # -- gateway ---------------------------------------------------------------------------------
    @property
    def router(self) -> RouterBgp | None:
        return self.frr.bgp if self.frr is not None else None

    @property
    def gateway_address(self) -> str | None:
        router = self.router
        if router is None or router.router_id is None:
            return None
        return router.router_id.value

    def frr_at_least(self, version: tuple[int, int, int]) -> bool | None:
        parsed = version_tuple(self.frr_version.value) if self.frr_version.value else None
        return None if parsed is None else parsed >= version

    # -- nodes -----------------------------------------------------------------------------------
    @property
    def node_ips_complete(self) -> bool:
        return bool(self.nodes) and all(n.ip for n in self.nodes)

    def node_by_ip(self) -> dict[str, Node]:
        return {n.ip: n for n in self.nodes if n.ip}

    # -- Cilium values ---------------------------------------------------------------------------
    def cilium_bool(self, *keys: str) -> tuple[bool | None, Any, str]:
        """(value as bool or None, raw value, dotted path) of a Cilium chart value."""
        raw = get_path(self.cilium, *keys)
        return as_bool(raw), raw, self.cilium_prefix + ".".join(keys)

    def kube_proxy_replacement(self) -> bool | None:
        """True/False, or None when the value is not one Cilium 1.19 accepts (CILIUM-KPR-VALUE reports it)."""
        raw = self.cilium.get("kubeProxyReplacement", False)
        return as_bool(raw)


def well_formed(doc: Doc) -> bool:
    meta = doc.body.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        return False
    for part in (doc.body.get("spec"), *((meta or {}).get(k) for k in ("labels", "annotations"))):
        if part is not None and not isinstance(part, dict):
            return False
    return True


def selector_state(selector: Any, labels: dict[str, str]) -> bool | None:
    """selector_matches, with None for a selector the apiserver would reject (reported elsewhere)."""
    if selector is not None and not isinstance(selector, dict):
        return None
    try:
        return selector_matches(selector, labels)
    except (SelectorError, AttributeError, TypeError):
        return None


def build_context(rendered: Rendered, frr_version_arg: str | None) -> Context:
    frr = parse_frr(rendered.frr_conf) if rendered.frr_conf or FRR_CONF in rendered.files else None
    ctx = Context(rendered=rendered, frr=frr, frr_version=_frr_version(frr, frr_version_arg))
    ctx.cilium, ctx.cilium_prefix = cilium_chart_values(rendered.cilium_values)
    ctx.nodes = _nodes(rendered)
    ctx.services = [service_from_doc(d) for d in rendered.docs if d.kind == "Service" and well_formed(d)]
    traefik = traefik_service(rendered.platform_values, ctx.nodes, None)
    ctx.services += [traefik] if traefik is not None else []
    return ctx


def _nodes(rendered: Rendered) -> list[Node]:
    """Every node; a node-label entry without a key is skipped (K3S checks read the raw config)."""
    out = []
    for name, config in sorted(rendered.k3s.items()):
        try:
            out.append(read_node(name, config))
        except NodeInputError:
            out.append(read_node(name, {k: v for k, v in config.items() if k != "node-label"}))
    return out


def _frr_version(frr: FrrConfig | None, arg: str | None) -> FrrVersionInfo:
    if arg:
        return FrrVersionInfo(arg, "--frr-version")
    if frr is not None and frr.version is not None:
        return FrrVersionInfo(frr.version.value, f"{FRR_CONF} line {frr.version.line}")
    return FrrVersionInfo("", "unknown")


__all__ = [
    "CILIUM_BGP", "CILIUM_DOC", "CILIUM_VALUES", "CCEC_KINDS", "BGP_KINDS", "Context",
    "DNS_ANNOTATION", "EBGP_REQUIRES_POLICY_SINCE", "FRR_CONF", "NBIT_SINCE", "Node",
    "PLATFORM_VALUES", "SHARING_KEY", "Service", "Vip", "build_context", "selector_state",
    "well_formed",
]
