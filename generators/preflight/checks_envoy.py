"""The seed's Envoy pitfalls: CiliumClusterwideEnvoyConfig / CiliumEnvoyConfig documents."""
from __future__ import annotations

from typing import Iterator

from generators.readback.durations import find_durations, is_proto_duration, suggest_duration
from generators.readback.rendered import Doc
from generators.readback.values import as_dict, as_seq

from .context import CCEC_KINDS, CILIUM_DOC, CILIUM_VALUES, Context

ORIGINAL_SOURCE = "cec.cilium.io/use-original-source-address"

def check_durations(ctx: Context) -> None:
    for doc in ctx.of_kind(*CCEC_KINDS):
        for i, resource in enumerate(as_seq(doc.spec.get("resources"))):
            rtype = str(as_dict(resource).get("@type", "")).rsplit(".", 1)[-1] or "resource"
            rname = as_dict(resource).get("name", i)
            for path, key, value in find_durations(resource, f"spec.resources[{i}]"):
                if isinstance(value, str) and is_proto_duration(value.strip()):
                    continue
                ctx.add("CCEC-DURATION", doc.file, doc.ref, path,
                        f"{key}: {value!r} is not a protobuf Duration: Cilium drops the whole {rtype} {rname!r} "
                        "with only 'Ignoring invalid CiliumEnvoyConfig JSON' in the agent log; the rest registers, "
                        "so connections are accepted and closed at once (looks like a network problem).",
                        f'write "{suggest_duration(value)}" (seconds with an s suffix, quoted or not)')


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
