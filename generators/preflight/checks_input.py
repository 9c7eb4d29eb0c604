"""Checks on the input itself: missing files, values Kubernetes or Cilium refuse outright."""
from __future__ import annotations

from typing import Any, Iterator

from generators.readback.rendered import Doc
from generators.readback.selectors import SelectorError, selector_matches
from generators.readback.values import as_bool, as_dict, as_seq

from .context import CILIUM_BGP, CILIUM_DOC, CILIUM_VALUES, FRR_CONF, Context, well_formed

_EXPECTED = {
    FRR_CONF: "the gateway checks (GW-*) and the gateway side of the timer checks",
    CILIUM_VALUES: "the Cilium value checks (CCEC-KPR, CCEC-ENVOYCONFIG, BGP-CONTROLPLANE-OFF, K3S-KUBE-PROXY-ORDER)",
    CILIUM_BGP: "the BGP wiring checks (BGP-*) and the pool checks (ADDR-*)",
}


def check_files(ctx: Context) -> None:
    for rel, skipped in _EXPECTED.items():
        if not ctx.has_file(rel):
            ctx.add("PREFLIGHT-FILE-MISSING", rel, "-", "-",
                    f"{rel} is not in the directory; skipped: {skipped}.",
                    f"add {rel} (`invoke gen` writes it), or ignore this if you keep it elsewhere")
    if not ctx.nodes:
        ctx.add("PREFLIGHT-FILE-MISSING", "k3s/<node>/config.yaml", "-", "-",
                "no k3s/<node>/config.yaml: the node set is unknown; skipped: k3s, node-selector, neighbor, "
                "tls-san and EndpointSlice checks.",
                "add one k3s/<node>/config.yaml per server (the directory name is the node name)")


def check_string_maps(ctx: Context) -> None:
    """Labels and annotations must be strings: kubectl refuses ``false``, ``8080`` or ``true`` unquoted."""
    for doc in ctx.docs:
        for path, key, value in _string_maps(doc):
            if isinstance(value, str):
                continue
            ctx.add("K8S-NOT-STRING", doc.file, doc.ref, f'{path}["{key}"]',
                    f"the value {value!r} is a YAML {type(value).__name__}, not a string: kubectl apply fails "
                    "with 'cannot unmarshal ... into ... of type string' and nothing of this document is applied.",
                    f'quote it: {key}: "{_yaml_scalar(value)}"')


# Fields the checks read, with the YAML shape their schema demands ("*" walks every list item).
_SHAPES: dict[str, list[tuple[str, type]]] = {
    "Service": [("spec.ports", list)],
    "EndpointSlice": [("endpoints", list), ("endpoints.*", dict), ("endpoints.*.addresses", list)],
    "CiliumClusterwideEnvoyConfig": [("spec.services", list), ("spec.services.*", dict), ("spec.resources", list),
                                     ("spec.resources.*", dict)],
    "CiliumEnvoyConfig": [("spec.services", list), ("spec.services.*", dict), ("spec.resources", list),
                          ("spec.resources.*", dict)],
    "CiliumBGPClusterConfig": [("spec.bgpInstances", list), ("spec.bgpInstances.*", dict),
                               ("spec.bgpInstances.*.peers", list), ("spec.bgpInstances.*.peers.*", dict)],
    "CiliumBGPPeerConfig": [("spec.timers", dict), ("spec.gracefulRestart", dict), ("spec.families", list),
                            ("spec.families.*", dict)],
    "CiliumBGPAdvertisement": [("spec.advertisements", list), ("spec.advertisements.*", dict)],
    "CiliumLoadBalancerIPPool": [("spec.blocks", list), ("spec.blocks.*", dict)],
}


def _values_at(node: Any, parts: list[str], path: str) -> Iterator[tuple[str, Any]]:
    if not parts:
        yield path, node
        return
    head, rest = parts[0], parts[1:]
    if head == "*":
        if isinstance(node, list):
            for i, item in enumerate(node):
                yield from _values_at(item, rest, f"{path}[{i}]")
    elif isinstance(node, dict) and node.get(head) is not None:
        yield from _values_at(node[head], rest, f"{path}.{head}" if path else head)


def _shape_problems(doc: Doc) -> Iterator[tuple[str, Any, str]]:
    meta = doc.body.get("metadata")
    for path, value in (("metadata", meta), ("spec", doc.body.get("spec")),
                        ("metadata.labels", meta.get("labels") if isinstance(meta, dict) else None),
                        ("metadata.annotations", meta.get("annotations") if isinstance(meta, dict) else None)):
        if value is not None and not isinstance(value, dict):
            yield path, value, "mapping"
    if not well_formed(doc):
        return
    for dotted, want in _SHAPES.get(doc.kind, []):
        for path, value in _values_at(doc.body, dotted.split("."), ""):
            if not isinstance(value, want):
                yield path, value, "list" if want is list else "mapping"


def check_shapes(ctx: Context) -> None:
    for doc in ctx.rendered.docs:
        for path, value, want in _shape_problems(doc):
            document = doc.ref if well_formed(doc) else f"{doc.kind or '?'} (document {doc.index + 1})"
            ctx.add("K8S-MALFORMED", doc.file, document, path,
                    f"{path} is a {type(value).__name__}, not a {want}: kubectl refuses the document, and "
                    "preflight cannot check what it holds.",
                    f"write {path} as a {want}" + (" (lines starting with `- `)" if want == "list" else
                                                   " (key: value lines indented under it)"))


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _string_maps(doc: Doc) -> Iterator[tuple[str, str, Any]]:
    meta = as_dict(doc.body.get("metadata"))
    for part in ("labels", "annotations"):
        for key, value in as_dict(meta.get(part)).items():
            yield f"metadata.{part}", str(key), value


def check_selectors(ctx: Context) -> None:
    for doc, path, selector in _selectors(ctx):
        if selector is None:
            continue
        try:
            if not isinstance(selector, dict):
                raise SelectorError(f"a selector must be a mapping, got {type(selector).__name__}")
            selector_matches(selector, {})
        except (SelectorError, AttributeError, TypeError) as exc:
            ctx.add("K8S-SELECTOR-INVALID", doc.file, doc.ref, path,
                    f"the apiserver rejects this selector ({exc}); the document is not applied.",
                    "use matchLabels, or matchExpressions with operator In, NotIn, Exists or DoesNotExist")


def _selectors(ctx: Context) -> Iterator[tuple[Doc, str, Any]]:
    for doc in ctx.of_kind("CiliumBGPClusterConfig"):
        yield doc, "spec.nodeSelector", doc.spec.get("nodeSelector")
    for doc in ctx.of_kind("CiliumLoadBalancerIPPool"):
        yield doc, "spec.serviceSelector", doc.spec.get("serviceSelector")
    for doc in ctx.of_kind("CiliumBGPPeerConfig"):
        for i, family in enumerate(as_seq(doc.spec.get("families"))):
            yield doc, f"spec.families[{i}].advertisements", as_dict(family).get("advertisements")
    for doc in ctx.of_kind("CiliumBGPAdvertisement"):
        for i, adv in enumerate(as_seq(doc.spec.get("advertisements"))):
            yield doc, f"spec.advertisements[{i}].selector", as_dict(adv).get("selector")


def check_kpr_value(ctx: Context) -> None:
    if not ctx.has_cilium_values or "kubeProxyReplacement" not in ctx.cilium:
        return
    raw = ctx.cilium["kubeProxyReplacement"]
    if as_bool(raw) is not None:
        return
    ctx.add("CILIUM-KPR-VALUE", CILIUM_VALUES, CILIUM_DOC, ctx.cilium_prefix + "kubeProxyReplacement",
            f"kubeProxyReplacement is {raw!r}; Cilium 1.19 knows only true and false (strict, partial, probe and "
            "disabled were removed, cilium/cilium#31286; before that, 'strict' already skipped code that tests "
            "for 'true'): kube-proxy replacement will not be what you meant. The kube-proxy checks are skipped.",
            "set kubeProxyReplacement: true")


def run(ctx: Context) -> None:
    check_files(ctx)
    check_shapes(ctx)
    check_string_maps(ctx)
    check_selectors(ctx)
    check_kpr_value(ctx)
