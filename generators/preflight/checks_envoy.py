"""The seed's Envoy pitfalls: CiliumClusterwideEnvoyConfig / CiliumEnvoyConfig documents."""
from __future__ import annotations

import re
from typing import Any, Iterator

from generators.rendered import Doc

from .context import CCEC_KINDS, CILIUM_DOC, CILIUM_VALUES, Context
from .values import as_dict, as_seq

ORIGINAL_SOURCE = "cec.cilium.io/use-original-source-address"

# protojson accepts a google.protobuf.Duration only as a string "<seconds>s" with up to 9 decimals.
_DURATION_OK = re.compile(r"^-?\d+(\.\d{1,9})?s$")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)$")

# Envoy fields (snake_case; protojson also takes lowerCamelCase) whose type is google.protobuf.Duration.
_DURATION_FIELDS = {
    "timeout", "interval", "interval_jitter", "initial_jitter", "no_traffic_interval",
    "no_traffic_healthy_interval", "unhealthy_interval", "unhealthy_edge_interval", "healthy_edge_interval",
    "connect_timeout", "idle_timeout", "base_ejection_time", "max_ejection_time", "max_ejection_time_jitter",
    "dns_refresh_rate", "drain_timeout", "per_try_timeout", "per_try_idle_timeout", "stream_idle_timeout",
    "request_timeout", "request_headers_timeout", "max_connection_duration", "max_stream_duration",
    "delayed_close_timeout", "max_downstream_connection_duration", "transport_socket_connect_timeout",
    "cleanup_interval", "max_interval", "base_interval", "dns_failure_refresh_rate",
    "http2_protocol_options_connection_keepalive_interval", "listener_filters_timeout",
    "tcp_keepalive_interval", "grpc_timeout_header_max", "flush_interval",
}


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _is_duration_field(key: str) -> bool:
    return _snake(key) in _DURATION_FIELDS


def _suggest(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}s"
    match = _GO_DURATION.match(str(value).strip())
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"
    return "<seconds>s, e.g. 0.1s"


def _walk(node: Any, path: str) -> Iterator[tuple[str, str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}"
            if _is_duration_field(str(key)) and not isinstance(value, (dict, list)):
                yield child, str(key), value
            else:
                yield from _walk(value, child)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk(item, f"{path}[{i}]")


def check_durations(ctx: Context) -> None:
    for doc in ctx.of_kind(*CCEC_KINDS):
        for i, resource in enumerate(as_seq(doc.spec.get("resources"))):
            rtype = str(as_dict(resource).get("@type", "")).rsplit(".", 1)[-1] or "resource"
            rname = as_dict(resource).get("name", i)
            for path, key, value in _walk(resource, f"spec.resources[{i}]"):
                if isinstance(value, str) and _DURATION_OK.match(value.strip()):
                    continue
                ctx.add("CCEC-DURATION", doc.file, doc.ref, path,
                        f"{key}: {value!r} is not a protobuf Duration: Cilium drops the whole {rtype} {rname!r} "
                        "with only 'Ignoring invalid CiliumEnvoyConfig JSON' in the agent log; the rest registers, "
                        "so connections are accepted and closed at once (looks like a network problem).",
                        f'write "{_suggest(value)}" (seconds with an s suffix, quoted or not)')


def _bound_services(doc: Doc) -> Iterator[tuple[int, str, str]]:
    for i, ref in enumerate(as_seq(doc.spec.get("services"))):
        ref = as_dict(ref)
        namespace = str(ref.get("namespace") or doc.namespace or "default")
        yield i, namespace, str(ref.get("name", ""))


def check_etp_local(ctx: Context) -> None:
    for doc in ctx.of_kind(*CCEC_KINDS):
        for i, namespace, name in _bound_services(doc):
            for svc in ctx.services:
                if (svc.namespace, svc.name) != (namespace, name) or svc.path_prefix:
                    continue
                if str(svc.spec.get("externalTrafficPolicy", "Cluster")) != "Local":
                    continue
                ctx.add("CCEC-ETP-LOCAL", svc.file, svc.document, "spec.externalTrafficPolicy",
                        f"{doc.ref} binds this Service (spec.services[{i}]); with externalTrafficPolicy: Local "
                        "Cilium's CCEC backend sync keeps only backends whose nodeName is the local node: on a node "
                        "without a backend Envoy's EDS cluster is empty and connections close at once (TLS EOF), "
                        "and a node with one can only send to itself, so the health checks cannot fail over.",
                        "set externalTrafficPolicy: Cluster (Envoy terminates TCP anyway; source IP is not kept)")


def check_original_source(ctx: Context) -> None:
    for doc in ctx.of_kind(*CCEC_KINDS):
        raw = as_dict(as_dict(doc.body.get("metadata")).get("annotations")).get(ORIGINAL_SOURCE)
        if raw is not None and str(raw).strip().lower() == "false":
            continue
        now = "missing" if raw is None else f"{raw!r}"
        ctx.add("CCEC-ORIGINAL-SOURCE", doc.file, doc.ref, f'metadata.annotations["{ORIGINAL_SOURCE}"]',
                f"the annotation is {now}: Envoy binds upstream sockets to the client's source address, so "
                "concurrent kubectl HTTP/2 streams from one client collide on the same 5-tuple and tear each "
                "other down (some kubectl commands work, others fail).",
                f'add metadata.annotations: {{{ORIGINAL_SOURCE}: "false"}}')


def check_cilium_switches(ctx: Context) -> None:
    cceces = ctx.of_kind(*CCEC_KINDS)
    if not cceces or not ctx.has_cilium_values:
        return
    names = ", ".join(d.ref for d in cceces)
    kpr = ctx.kube_proxy_replacement()
    if kpr is False:
        ctx.add("CCEC-KPR", CILIUM_VALUES, CILIUM_DOC, ctx.cilium_prefix + "kubeProxyReplacement",
                f"kube-proxy replacement is off while {names} exists: the CCEC's services binding relies on "
                "Cilium's socket LB to redirect Service traffic into Envoy, so it is silently a no-op.",
                "set kubeProxyReplacement: true (then, in a second step, disable-kube-proxy: true in k3s)")
    enabled, raw, path = ctx.cilium_bool("envoyConfig", "enabled")
    if enabled is not True:
        ctx.add("CCEC-ENVOYCONFIG", CILIUM_VALUES, CILIUM_DOC, path,
                f"envoyConfig.enabled is {raw!r} while {names} exists: the CiliumEnvoyConfig CRDs and their "
                "controller are not installed, so the CCEC is refused or never reaches Envoy.",
                "set envoyConfig.enabled: true")


def run(ctx: Context) -> None:
    check_durations(ctx)
    check_etp_local(ctx)
    check_original_source(ctx)
    check_cilium_switches(ctx)
