"""Services and their endpoints, as a cluster built from the rendered files would have them.

Two sources, both rendered files: every ``Service`` / ``EndpointSlice`` document, and the Service the
Traefik Helm chart creates from ``platform/values.yaml`` (``traefik.values``, or values directly under
``traefik``), modelled on the chart's templates: name and namespace ``traefik`` (release ``traefik`` in
namespace ``traefik``), the chart's standard labels, ``service.labels`` / ``service.annotations`` /
``service.type`` / ``service.spec``, and one port per exposed entrypoint (``web`` 80, ``websecure`` 443 by
default). :meth:`Service.manifest` gives that Service as the chart would apply it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from .k3s import K3sNode
from .rendered import PLATFORM_VALUES, Doc, Rendered
from .values import as_bool, as_dict, as_int, as_list

TRAEFIK_RELEASE = "traefik"
TRAEFIK_NAMESPACE = "traefik"
TRAEFIK_SOURCE = "platform/values.yaml (Traefik chart Service)"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# LB-IPAM's ways to pin a VIP: the annotation (and its pre-1.16 name), then spec.loadBalancerIP.
VIP_ANNOTATIONS = ("lbipam.cilium.io/ips", "io.cilium/lb-ipam-ips")
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


@dataclass(frozen=True)
class Vip:
    """A VIP the Service pins, and the field path it is pinned at (for findings)."""

    address: str
    path: str

    @property
    def ipv4(self) -> str | None:
        """The address if it is an IPv4 address (what the lab's gateway routes), else None."""
        try:
            return str(ipaddress.IPv4Address(self.address))
        except ValueError:
            return None


@dataclass
class Service:
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
    file: str = ""  # the file that states it (platform/values.yaml for the chart's Service)
    document: str = ""  # Kind/namespace/name
    path_prefix: str = ""  # "" for a document; "traefik.values.service." for the chart's
    spec: dict = field(default_factory=dict)  # as written (the chart's: the values' `service` block)
    vips: list[Vip] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def from_chart(self) -> bool:
        return bool(self.path_prefix)

    def bgp_labels(self) -> dict[str, str]:
        """The label set Cilium matches selectors against: the Service's labels plus its name and namespace."""
        out = dict(self.labels)
        out["io.kubernetes.service.name"] = self.name
        out["io.kubernetes.service.namespace"] = self.namespace
        return out

    def has_local_endpoint(self, node: str) -> bool:
        return any(ep.node_name == node and not ep.terminating for ep in self.endpoints)

    def port_numbers(self) -> list[int]:
        """Every numeric port and targetPort, as written."""
        out = []
        for port in as_list_of_dicts(self.spec.get("ports")):
            for key in ("port", "targetPort"):
                if str(port.get(key, "")).isdigit():
                    out.append(int(port[key]))
        return out

    def manifest(self) -> dict:
        """The Service as a Kubernetes document (what the chart applies for the Traefik Service)."""
        spec: dict[str, Any] = {
            "type": self.type,
            "ports": [
                {
                    "name": p.name,
                    "port": p.port,
                    "protocol": p.protocol,
                    "targetPort": int(p.target_port) if p.target_port.isdigit() else p.target_port,
                }
                for p in self.ports
            ],
        }
        if self.selector is not None:
            spec["selector"] = dict(self.selector)
        if self.type in ("LoadBalancer", "NodePort"):
            spec["externalTrafficPolicy"] = self.external_traffic_policy
        if self.load_balancer_class:
            spec["loadBalancerClass"] = self.load_balancer_class
        if self.load_balancer_ip:
            spec["loadBalancerIP"] = self.load_balancer_ip
        if self.ip_families:
            spec["ipFamilies"] = list(self.ip_families)
        if self.ip_family_policy:
            spec["ipFamilyPolicy"] = self.ip_family_policy
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace, "labels": dict(self.labels)}
        if self.annotations:
            meta["annotations"] = dict(self.annotations)
        return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def as_list_of_dicts(value: object) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _str_dict(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _ports(raw: object) -> tuple[ServicePort, ...]:
    out = []
    for p in as_list_of_dicts(raw):
        if "port" in p and str(p["port"]).isdigit():
            out.append(
                ServicePort(
                    name=str(p.get("name", "")),
                    port=int(p["port"]),
                    protocol=str(p.get("protocol", "TCP")),
                    target_port=str(p.get("targetPort", p["port"])),
                )
            )
    return tuple(out)


def _vips(annotations: dict[str, str], spec: dict, prefix: str) -> list[Vip]:
    out: list[Vip] = []
    for key in VIP_ANNOTATIONS:
        for address in as_list(annotations.get(key)):
            out.append(Vip(address, f'{prefix or "metadata."}annotations["{key}"]'))
    if spec.get("loadBalancerIP"):
        out.append(Vip(str(spec["loadBalancerIP"]), f"{prefix or 'spec.'}loadBalancerIP"))
    return out


def service_from_doc(doc: Doc) -> Service:
    spec = doc.spec
    lb_class = spec.get("loadBalancerClass")
    annotations = doc.annotations
    return Service(
        namespace=doc.namespace or "default",
        name=doc.name,
        type=str(spec.get("type", "ClusterIP")),
        labels=_str_dict(doc.labels),
        annotations=annotations,
        external_traffic_policy=str(spec.get("externalTrafficPolicy", "Cluster")),
        load_balancer_class=str(lb_class) if lb_class else None,
        load_balancer_ip=str(spec.get("loadBalancerIP", "") or ""),
        ip_families=tuple(str(f) for f in spec.get("ipFamilies") or ()),
        ip_family_policy=spec.get("ipFamilyPolicy"),
        ports=_ports(spec.get("ports")),
        selector=_str_dict(spec["selector"]) if isinstance(spec.get("selector"), dict) else None,
        source=f"{doc.file} (document {doc.index})",
        file=doc.file,
        document=doc.ref,
        spec=spec,
        vips=_vips(annotations, spec, ""),
    )


def endpoints_from_slice(doc: Doc) -> list[Endpoint]:
    ports = _ports(doc.body.get("ports"))
    out = []
    for ep in as_list_of_dicts(doc.body.get("endpoints")):
        conditions = as_dict(ep.get("conditions"))
        ready = conditions.get("ready")
        for address in ep.get("addresses") or []:
            out.append(
                Endpoint(
                    address=str(address),
                    node_name=str(ep.get("nodeName") or ""),
                    ready=True if ready is None else bool(ready),
                    terminating=bool(conditions.get("terminating", False)),
                    ports=ports,
                )
            )
    return out


def _deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def traefik_values(platform_values: dict) -> tuple[dict, str] | None:
    """The Traefik chart's values and their path prefix, or None when Traefik is disabled or absent."""
    block = as_dict(platform_values.get("traefik"))
    if not block or as_bool(block.get("enabled")) is False:
        return None
    if isinstance(block.get("values"), dict):
        return block["values"], "traefik.values."
    return block, "traefik."


def traefik_service(platform_values: dict, nodes: list[K3sNode], chart_version: str | None) -> Service | None:
    """The Service the Traefik chart renders, or None when Traefik or its Service is disabled."""
    found = traefik_values(platform_values)
    if found is None:
        return None
    values, prefix = found
    block = as_dict(platform_values.get("traefik"))
    version = chart_version or str(block.get("version") or block.get("chartVersion") or "")
    svc = as_dict(values.get("service"))
    if as_bool(svc.get("enabled")) is False:
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
    spec = as_dict(svc.get("spec"))
    ports = _deep_merge(TRAEFIK_DEFAULT_PORTS, as_dict(values.get("ports")))
    service_ports = []
    for port_name, port in ports.items():
        if not isinstance(port, dict) or not as_dict(port.get("expose")).get("default"):
            continue
        exposed = as_int(port.get("exposedPort", port.get("port")))
        if exposed is None:
            continue
        service_ports.append(
            ServicePort(
                name=port_name, port=int(exposed), protocol=str(port.get("protocol", "TCP")), target_port=port_name
            )
        )
    kind = str(as_dict(values.get("deployment")).get("kind", "Deployment"))
    endpoints = [Endpoint(address=n.ip, node_name=n.name) for n in nodes if n.ip] if kind == "DaemonSet" else []
    lb_class = spec.get("loadBalancerClass") or svc.get("loadBalancerClass")
    annotations = _str_dict(svc.get("annotations"))
    service_type = str(svc.get("type") or "LoadBalancer")
    return Service(
        namespace=namespace,
        name=name,
        type=service_type,
        labels=labels,
        annotations=annotations,
        external_traffic_policy=str(spec.get("externalTrafficPolicy", "Cluster")),
        load_balancer_class=str(lb_class) if lb_class else None,
        load_balancer_ip=str(spec.get("loadBalancerIP", "") or ""),
        ip_families=tuple(str(f) for f in svc.get("ipFamilies") or ()),
        ip_family_policy=svc.get("ipFamilyPolicy"),
        ports=tuple(service_ports),
        selector={
            "app.kubernetes.io/name": app_name,
            "app.kubernetes.io/instance": labels["app.kubernetes.io/instance"],
        },
        source=TRAEFIK_SOURCE + (f", chart {version}" if version else ""),
        endpoints=endpoints,
        file=PLATFORM_VALUES,
        document=f"Service/{namespace}/{name}",
        path_prefix=f"{prefix}service.",
        spec={**svc, "type": service_type},
        vips=_vips(annotations, {**svc, **spec}, f"{prefix}service."),
    )


def read_services(
    rendered: Rendered, nodes: list[K3sNode], traefik_chart_version: str | None = None
) -> tuple[list[Service], list[str]]:
    """Every Service, with endpoints from EndpointSlices (or the Traefik DaemonSet), sorted by namespace/name."""
    problems: list[str] = []
    services = [service_from_doc(d) for d in rendered.of_kind("Service")]
    traefik = traefik_service(rendered.platform_values, nodes, traefik_chart_version)
    if traefik is not None:
        if any(s.key == traefik.key for s in services):
            problems.append(
                f"Service {traefik.key} is both a rendered document and the Traefik chart's Service; the document wins"
            )
        else:
            services.append(traefik)
            if not traefik.endpoints:
                problems.append(
                    "Traefik runs as a Deployment: which nodes hold its pods is not in the files, "
                    "so it has no endpoints here (use deployment.kind: DaemonSet)"
                )
    by_key = {s.key: s for s in services}
    for doc in rendered.of_kind("EndpointSlice"):
        owner = doc.labels.get(SERVICE_NAME_LABEL)
        key = f"{doc.namespace or 'default'}/{owner}"
        if not owner or key not in by_key:
            problems.append(
                f"{doc.ref} ({doc.file}): label {SERVICE_NAME_LABEL}={owner!r} names no known Service; "
                f"its endpoints belong to nothing"
            )
            continue
        by_key[key].endpoints.extend(endpoints_from_slice(doc))
    return sorted(services, key=lambda s: (s.namespace, s.name)), problems
