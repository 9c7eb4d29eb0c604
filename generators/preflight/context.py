"""What every check needs, read once from the files: nodes, Services, values, the parsed frr.conf.

Nothing here comes from our inventory model: a user's hand-written directory in the layout works.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from generators.frrconf import FrrConfig, RouterBgp, parse_frr, version_tuple
from generators.rendered import (
    CILIUM_BGP, CILIUM_VALUES, FRR_CONF, K3S_GLOB, PLATFORM_VALUES, Doc, Rendered,
)
from generators.selectors import SelectorError, selector_matches

from .findings import CHECKS, Finding, FrrVersionInfo
from .values import as_bool, as_dict, as_ip, as_list, get_path

CILIUM_DOC = "helm:cilium"
N_BIT_SINCE = (8, 3, 0)
EBGP_REQUIRES_POLICY_SINCE = (7, 4, 0)
VIP_ANNOTATIONS = ("lbipam.cilium.io/ips", "io.cilium/lb-ipam-ips")
SHARING_KEY = "lbipam.cilium.io/sharing-key"
DNS_ANNOTATION = "external-dns.alpha.kubernetes.io/hostname"
CCEC_KINDS = ("CiliumClusterwideEnvoyConfig", "CiliumEnvoyConfig")
BGP_KINDS = ("CiliumBGPClusterConfig", "CiliumBGPPeerConfig", "CiliumBGPAdvertisement", "CiliumBGPNodeConfigOverride")


@dataclass
class Node:
    name: str
    file: str
    config: dict
    ip: str | None
    labels: dict[str, str]

    @property
    def document(self) -> str:
        return f"k3s:{self.name}"


@dataclass
class Vip:
    address: str
    path: str  # where it is pinned


@dataclass
class Service:
    """A Service of a Kubernetes file, or the one the Traefik chart makes from platform values."""

    file: str
    document: str
    namespace: str
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: dict
    path_prefix: str  # "" for a real Service; "traefik.values.service." for the chart's
    vips: list[Vip] = field(default_factory=list)

    @property
    def type(self) -> str:
        return str(self.spec.get("type", "ClusterIP"))

    @property
    def selector_labels(self) -> dict[str, str]:
        """Labels as Cilium's service selectors see them (with its service name/namespace pseudo-labels)."""
        return {**self.labels, "io.kubernetes.service.name": self.name, "io.kubernetes.service.namespace": self.namespace}

    def ports(self) -> list[int]:
        out = []
        for port in self.spec.get("ports") or []:
            if isinstance(port, dict):
                for key in ("port", "targetPort"):
                    if str(port.get(key, "")).isdigit():
                        out.append(int(port[key]))
        return out


@dataclass
class Context:
    rendered: Rendered
    frr: FrrConfig | None
    frr_version: FrrVersionInfo
    nodes: list[Node] = field(default_factory=list)
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
    ctx.cilium, ctx.cilium_prefix = _cilium_values(rendered.cilium_values)
    ctx.nodes = [_node(name, config) for name, config in sorted(rendered.k3s.items())]
    ctx.services = _services(rendered) + _traefik_services(rendered.platform_values)
    return ctx


def _frr_version(frr: FrrConfig | None, arg: str | None) -> FrrVersionInfo:
    if arg:
        return FrrVersionInfo(arg, "--frr-version")
    if frr is not None and frr.version is not None:
        return FrrVersionInfo(frr.version.value, f"{FRR_CONF} line {frr.version.line}")
    return FrrVersionInfo("", "unknown")


def _cilium_values(values: dict) -> tuple[dict, str]:
    """Top-level Cilium values, or the ``cilium:`` block of an umbrella chart's values."""
    nested = values.get("cilium")
    own_keys = {"bgpControlPlane", "kubeProxyReplacement", "envoyConfig"}
    if isinstance(nested, dict) and not own_keys & set(values):
        return nested, "cilium."
    return values, ""


def _node(dir_name: str, config: dict) -> Node:
    name = str(config.get("node-name") or dir_name)
    ip = None
    for key in ("node-ip", "advertise-address"):
        for candidate in as_list(config.get(key)):
            parsed = as_ip(candidate)
            if parsed is not None and parsed.version == 4:
                ip = str(parsed)
                break
        if ip:
            break
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "node-role.kubernetes.io/control-plane": "true",
        "node-role.kubernetes.io/master": "true",
    }
    if as_bool(config.get("disable-cloud-controller")) is not True:
        # k3s's embedded cloud provider labels every node instance-type=k3s unless the kubelet brings its
        # own value (k3s respects a node-label for it since 2024, k3s-io/k3s#9721).
        labels["node.kubernetes.io/instance-type"] = "k3s"
    if not config.get("datastore-endpoint"):
        labels["node-role.kubernetes.io/etcd"] = "true"
    for item in as_list(config.get("node-label")):
        key, _, value = item.partition("=")
        labels[key.strip()] = value.strip()
    return Node(name=name, file=K3S_GLOB.replace("*", dir_name), config=config, ip=ip, labels=labels)


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in as_dict(value).items()}


def _vips(annotations: dict[str, str], spec: dict, prefix: str) -> list[Vip]:
    out: list[Vip] = []
    for key in VIP_ANNOTATIONS:
        for address in as_list(annotations.get(key)):
            out.append(Vip(address, f'{prefix}metadata.annotations["{key}"]' if not prefix else f'{prefix}annotations["{key}"]'))
    if spec.get("loadBalancerIP"):
        out.append(Vip(str(spec["loadBalancerIP"]), f"{prefix}spec.loadBalancerIP" if not prefix else f"{prefix}loadBalancerIP"))
    return out


def _services(rendered: Rendered) -> list[Service]:
    out = []
    for doc in rendered.docs:
        if doc.kind != "Service" or not well_formed(doc):
            continue
        meta = as_dict(doc.body.get("metadata"))
        annotations = _str_map(meta.get("annotations"))
        spec = doc.spec
        out.append(Service(
            file=doc.file, document=doc.ref, namespace=doc.namespace or "default", name=doc.name,
            labels=_str_map(meta.get("labels")), annotations=annotations, spec=spec, path_prefix="",
            vips=_vips(annotations, spec, ""),
        ))
    return out


def _traefik_services(platform: dict) -> list[Service]:
    """The LoadBalancer Service the Traefik chart renders from ``traefik.values.service``.

    The chart labels it ``app.kubernetes.io/name: traefik`` and ``app.kubernetes.io/instance``;
    its default type is LoadBalancer. Values may sit under ``traefik.values`` (our platform
    chart) or directly under ``traefik``.
    """
    block = as_dict(platform.get("traefik"))
    if not block or as_bool(block.get("enabled")) is False:
        return []
    if isinstance(block.get("values"), dict):
        values, prefix = block["values"], "traefik.values."
    else:
        values, prefix = block, "traefik."
    svc = as_dict(values.get("service"))
    if as_bool(svc.get("enabled")) is False:
        return []
    namespace = str(values.get("namespaceOverride") or "traefik")
    name = str(values.get("fullnameOverride") or "traefik")
    labels = {"app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": f"{name}-{namespace}"}
    labels.update(_str_map(svc.get("labels")))
    annotations = _str_map(svc.get("annotations"))
    spec = {**svc, "type": str(svc.get("type") or "LoadBalancer")}
    return [Service(
        file=PLATFORM_VALUES, document=f"Service/{namespace}/{name}", namespace=namespace, name=name, labels=labels,
        annotations=annotations, spec=spec, path_prefix=f"{prefix}service.",
        vips=_vips(annotations, spec, f"{prefix}service."),
    )]


__all__ = [
    "CILIUM_BGP", "CILIUM_DOC", "CILIUM_VALUES", "CCEC_KINDS", "BGP_KINDS", "Context",
    "DNS_ANNOTATION", "EBGP_REQUIRES_POLICY_SINCE", "FRR_CONF", "N_BIT_SINCE", "Node",
    "PLATFORM_VALUES", "SHARING_KEY", "Service", "Vip", "build_context", "selector_state",
    "well_formed",
]
