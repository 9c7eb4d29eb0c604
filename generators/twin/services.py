"""Services and their endpoints as the twin's cluster would have them.

Two sources, both rendered files: every ``Service`` / ``EndpointSlice`` document, and the Service the
Traefik Helm chart creates from ``platform/values.yaml`` (``traefik.values``), modelled on the chart's
templates: name and namespace ``traefik`` (release ``traefik`` in namespace ``traefik``), the chart's
standard labels, ``service.labels`` / ``service.annotations`` / ``service.type`` / ``service.spec``,
and one port per exposed entrypoint (``web`` 80, ``websecure`` 443 by default).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from generators.rendered import Doc, Rendered

from .nodes import NodeInfo

TRAEFIK_RELEASE = "traefik"
TRAEFIK_NAMESPACE = "traefik"
TRAEFIK_SOURCE = "platform/values.yaml (Traefik chart Service)"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# The chart's default entrypoints (values.yaml ``ports``): name -> (container port, exposed port, exposed by default)
TRAEFIK_DEFAULT_PORTS: dict[str, dict[str, Any]] = {
    "traefik": {"port": 8080, "expose": {"default": False}, "protocol": "TCP"},
    "metrics": {"port": 9100, "expose": {"default": False}, "protocol": "TCP"},
    "web": {"port": 8000, "exposedPort": 80, "expose": {"default": True}, "protocol": "TCP"},
    "websecure": {"port": 8443, "exposedPort": 443, "expose": {"default": True}, "protocol": "TCP"},
}


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    protocol: str = "TCP"
    target_port: str = ""  # number or name, as written


@dataclass(frozen=True)
class Endpoint:
    address: str
    node_name: str
    ready: bool = True
    terminating: bool = False
    ports: tuple[ServicePort, ...] = ()  # the slice's ports


@dataclass
class ServiceInfo:
    namespace: str
    name: str
    type: str = "ClusterIP"
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    external_traffic_policy: str = "Cluster"
    load_balancer_class: str | None = None
    load_balancer_ip: str = ""
    ip_families: tuple[str, ...] = ()
    ip_family_policy: str | None = None
    ports: tuple[ServicePort, ...] = ()
    selector: dict[str, str] | None = None
    source: str = ""
    endpoints: list[Endpoint] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def bgp_labels(self) -> dict[str, str]:
        """The label set Cilium matches selectors against: the Service's labels plus its name and namespace."""
        out = dict(self.labels)
        out["io.kubernetes.service.name"] = self.name
        out["io.kubernetes.service.namespace"] = self.namespace
        return out

    def has_local_endpoint(self, node: str) -> bool:
        return any(ep.node_name == node and not ep.terminating for ep in self.endpoints)


def _str_dict(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _ports(raw: object) -> tuple[ServicePort, ...]:
    out = []
    for p in raw or []:
        if isinstance(p, dict) and "port" in p:
            out.append(ServicePort(name=str(p.get("name", "")), port=int(p["port"]),
                                   protocol=str(p.get("protocol", "TCP")),
                                   target_port=str(p.get("targetPort", p["port"]))))
    return tuple(out)


def service_from_doc(doc: Doc) -> ServiceInfo:
    spec = doc.spec
    lb_class = spec.get("loadBalancerClass")
    return ServiceInfo(
        namespace=doc.namespace or "default", name=doc.name, type=str(spec.get("type", "ClusterIP")),
        labels=_str_dict(doc.labels), annotations=doc.annotations,
        external_traffic_policy=str(spec.get("externalTrafficPolicy", "Cluster")),
        load_balancer_class=str(lb_class) if lb_class else None,
        load_balancer_ip=str(spec.get("loadBalancerIP", "") or ""),
        ip_families=tuple(str(f) for f in spec.get("ipFamilies") or ()),
        ip_family_policy=spec.get("ipFamilyPolicy"),
        ports=_ports(spec.get("ports")),
        selector=_str_dict(spec["selector"]) if isinstance(spec.get("selector"), dict) else None,
        source=f"{doc.file} (document {doc.index})",
    )


def endpoints_from_slice(doc: Doc) -> list[Endpoint]:
    ports = _ports(doc.body.get("ports"))
    out = []
    for ep in doc.body.get("endpoints") or []:
        conditions = ep.get("conditions") or {}
        ready = conditions.get("ready")
        for address in ep.get("addresses") or []:
            out.append(Endpoint(address=str(address), node_name=str(ep.get("nodeName") or ""),
                                ready=True if ready is None else bool(ready),
                                terminating=bool(conditions.get("terminating", False)), ports=ports))
    return out


def _deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def traefik_service(platform_values: dict, nodes: list[NodeInfo], chart_version: str | None) -> ServiceInfo | None:
    """The Service the Traefik chart renders, or None when Traefik or its Service is disabled."""
    block = platform_values.get("traefik") or {}
    if not isinstance(block, dict) or not block.get("enabled"):
        return None
    values = block.get("values") or {}
    version = chart_version or str(block.get("version") or block.get("chartVersion") or "")
    svc = values.get("service") or {}
    if svc.get("enabled", True) is False:
        return None
    name = str(values.get("fullnameOverride") or TRAEFIK_RELEASE)
    namespace = str(values.get("namespaceOverride") or TRAEFIK_NAMESPACE)
    app_name = str(values.get("nameOverride") or "traefik")
    labels = {
        "app.kubernetes.io/name": app_name,
        "app.kubernetes.io/instance": str(values.get("instanceLabelOverride") or f"{TRAEFIK_RELEASE}-{namespace}"),
        "app.kubernetes.io/managed-by": "Helm",
    }
    if version:
        labels["helm.sh/chart"] = f"traefik-{version}".replace("+", "_")
    labels.update(_str_dict(values.get("commonLabels")))
    labels.update(_str_dict(svc.get("labels")))
    spec = svc.get("spec") or {}
    ports = _deep_merge(TRAEFIK_DEFAULT_PORTS, values.get("ports") or {})
    service_ports = []
    for port_name, port in ports.items():
        if not isinstance(port, dict) or not (port.get("expose") or {}).get("default"):
            continue
        exposed = port.get("exposedPort", port.get("port"))
        service_ports.append(ServicePort(name=port_name, port=int(exposed), protocol=str(port.get("protocol", "TCP")),
                                         target_port=port_name))
    kind = str((values.get("deployment") or {}).get("kind", "Deployment"))
    endpoints = [Endpoint(address=n.ip, node_name=n.name) for n in nodes] if kind == "DaemonSet" else []
    lb_class = spec.get("loadBalancerClass") or svc.get("loadBalancerClass")
    return ServiceInfo(
        namespace=namespace, name=name, type=str(svc.get("type", "LoadBalancer")), labels=labels,
        annotations=_str_dict(svc.get("annotations")),
        external_traffic_policy=str(spec.get("externalTrafficPolicy", "Cluster")),
        load_balancer_class=str(lb_class) if lb_class else None,
        load_balancer_ip=str(spec.get("loadBalancerIP", "") or ""),
        ip_families=tuple(str(f) for f in svc.get("ipFamilies") or ()),
        ip_family_policy=svc.get("ipFamilyPolicy"),
        ports=tuple(service_ports),
        selector={"app.kubernetes.io/name": app_name, "app.kubernetes.io/instance": labels["app.kubernetes.io/instance"]},
        source=TRAEFIK_SOURCE + (f", chart {version}" if version else ""),
        endpoints=endpoints,
    )


def load_services(rendered: Rendered, nodes: list[NodeInfo], traefik_chart_version: str | None = None
                  ) -> tuple[list[ServiceInfo], list[str]]:
    """Every Service the twin knows, with endpoints from EndpointSlices (or the Traefik DaemonSet)."""
    problems: list[str] = []
    services = [service_from_doc(d) for d in rendered.of_kind("Service")]
    traefik = traefik_service(rendered.platform_values, nodes, traefik_chart_version)
    if traefik is not None:
        if any(s.key == traefik.key for s in services):
            problems.append(f"Service {traefik.key} is both a rendered document and the Traefik chart's Service; "
                            f"the document wins in the twin")
        else:
            services.append(traefik)
            if not traefik.endpoints:
                problems.append("Traefik runs as a Deployment: the twin cannot know which nodes hold its pods, "
                                "so it models no endpoints for it (use deployment.kind: DaemonSet)")
    by_key = {s.key: s for s in services}
    for doc in rendered.of_kind("EndpointSlice"):
        owner = doc.labels.get(SERVICE_NAME_LABEL)
        key = f"{doc.namespace or 'default'}/{owner}"
        if not owner or key not in by_key:
            problems.append(f"{doc.ref} ({doc.file}): label {SERVICE_NAME_LABEL}={owner!r} names no known Service; "
                            f"its endpoints belong to nothing")
            continue
        by_key[key].endpoints.extend(endpoints_from_slice(doc))
    return sorted(services, key=lambda s: (s.namespace, s.name)), problems
