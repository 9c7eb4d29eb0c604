"""BGP wiring inside the cluster: Pool -> ClusterConfig -> PeerConfig -> Advertisement -> Service labels."""

from __future__ import annotations

from generators.readback.cilium import AdvertEntry, Advertisement, ClusterConfig
from generators.readback.selectors import describe_selector
from generators.readback.values import as_dict, as_seq

from .context import BGP_KINDS, CILIUM_DOC, CILIUM_VALUES, Context, selector_state


def check_control_plane(ctx: Context) -> None:
    docs = ctx.of_kind(*BGP_KINDS)
    if not docs or not ctx.has_cilium_values:
        return
    enabled, raw, path = ctx.cilium_bool("bgpControlPlane", "enabled")
    if enabled is True:
        return
    ctx.add(
        "BGP-CONTROLPLANE-OFF",
        CILIUM_VALUES,
        CILIUM_DOC,
        path,
        f"bgpControlPlane.enabled is {raw!r} while {len(docs)} BGP resources exist ({docs[0].ref}, ...): "
        "Cilium installs no BGP CRDs and runs no speaker, so no node peers and no VIP is advertised.",
        "set bgpControlPlane.enabled: true",
    )


def _service_advertisements(ctx: Context) -> list[tuple[str, AdvertEntry]]:
    out = []
    for doc in ctx.of_kind("CiliumBGPAdvertisement"):
        for entry in Advertisement.from_doc(doc).entries:
            if entry.type == "Service" and "LoadBalancerIP" in entry.service_addresses:
                out.append((doc.ref, entry))
    return out


def check_services_advertised(ctx: Context) -> None:
    advertisements = _service_advertisements(ctx)
    if not ctx.of_kind("CiliumBGPClusterConfig"):
        return  # no BGP in this directory at all: nothing to advertise with
    for svc in ctx.services:
        if svc.type != "LoadBalancer":
            continue
        states = [selector_state(entry.raw_selector, svc.bgp_labels()) for _, entry in advertisements]
        if any(s is not False for s in states):
            continue  # selected, or a selector we cannot evaluate (K8S-SELECTOR-INVALID reports it)
        tried = "; ".join(f"{ref}: {describe_selector(entry.selector)}" for ref, entry in advertisements)
        ctx.add(
            "BGP-SERVICE-NOT-ADVERTISED",
            svc.file,
            svc.document,
            f"{svc.path_prefix or 'metadata.'}labels",
            f"no CiliumBGPAdvertisement of type Service with LoadBalancerIP selects this LoadBalancer Service "
            f"(labels {svc.labels or '{}'}; selectors: {tried or 'none'}): it gets an IP, but the IP never "
            "reaches the BGP wire and does not answer from outside.",
            "add the label the Advertisement selects (the seed's selects any Service with "
            "app.kubernetes.io/name), or widen the Advertisement's selector",
        )


def check_peer_configs(ctx: Context) -> None:
    adverts = ctx.of_kind("CiliumBGPAdvertisement")
    for doc in ctx.of_kind("CiliumBGPPeerConfig"):
        for i, family in enumerate(as_seq(doc.spec.get("families"))):
            selector = as_dict(family).get("advertisements")
            states = [selector_state(selector, a.labels) for a in adverts]
            if any(s is not False for s in states) and states:
                continue
            if selector is not None and not isinstance(selector, dict):
                continue
            labels = "; ".join(f"{a.ref}: {a.labels or '{}'}" for a in adverts) or "no Advertisement in the files"
            ctx.add(
                "BGP-PEERCONFIG-NO-ADVERTISEMENT",
                doc.file,
                doc.ref,
                f"spec.families[{i}].advertisements",
                f"the advertisement selector ({describe_selector(selector)}) matches no CiliumBGPAdvertisement "
                f"({labels}): peers using this PeerConfig get no route for "
                f"{as_dict(family).get('afi', '?')}/{as_dict(family).get('safi', '?')}.",
                "make the selector match the Advertisement's metadata.labels (the seed uses advertise: bgp)",
            )


def check_peer_config_refs(ctx: Context) -> None:
    names = {d.name for d in ctx.of_kind("CiliumBGPPeerConfig")}
    for doc in ctx.of_kind("CiliumBGPClusterConfig"):
        for instance in ClusterConfig.from_doc(doc).instances:
            for peer in instance.peers:
                ref = peer.config_ref
                if ref is None or str(ref) in names:
                    continue
                ctx.add(
                    "BGP-PEERCONFIG-MISSING",
                    doc.file,
                    doc.ref,
                    f"{peer.path}.peerConfigRef.name",
                    f"peer {peer.name!r} references CiliumBGPPeerConfig {ref!r}, which is not "
                    f"in the files (there are: {', '.join(sorted(names)) or 'none'}): Cilium marks the "
                    "ClusterConfig MissingPeerConfigs and the peer runs without the intended timers, graceful "
                    "restart and advertisement selectors, so nothing intended is advertised.",
                    f"set peerConfigRef.name to an existing PeerConfig ({', '.join(sorted(names)) or 'create one'})",
                )


def check_node_selectors(ctx: Context) -> None:
    if not ctx.nodes:
        return
    configs = ctx.of_kind("CiliumBGPClusterConfig")
    covered: set[str] = set()
    unknown = False
    for doc in configs:
        selector = doc.spec.get("nodeSelector")
        states = {n.name: (True if selector is None else selector_state(selector, n.labels)) for n in ctx.nodes}
        if any(s is None for s in states.values()):
            unknown = True  # invalid selector: K8S-SELECTOR-INVALID
            continue
        matched = {n for n, s in states.items() if s}
        covered |= matched
        if not matched:
            ctx.add(
                "BGP-NODESELECTOR-NO-NODE",
                doc.file,
                doc.ref,
                "spec.nodeSelector",
                f"nodeSelector ({describe_selector(selector)}) matches none of the nodes "
                f"{', '.join(sorted(states))} (labels from node-label in their k3s configs plus the labels k3s "
                "sets: kubernetes.io/hostname, node.kubernetes.io/instance-type=k3s unless node-label overrides "
                "it, the server role labels): no node runs this BGP instance.",
                "add the label to node-label in every k3s config, or fix the selector",
            )
    if not configs or unknown or not covered:
        return
    for node in ctx.nodes:
        if node.name in covered:
            continue
        ctx.add(
            "BGP-NODESELECTOR-PARTIAL",
            node.file,
            node.document,
            "node-label",
            f"{node.name} (labels {', '.join(f'{k}={v}' for k, v in sorted(node.labels.items()))}) is selected "
            f"by no CiliumBGPClusterConfig, while {', '.join(sorted(covered))} are: {node.name} never peers, "
            "so the gateway has no next-hop through it.",
            "add the label the ClusterConfig selects (the seed: node.kubernetes.io/instance-type=bare-metal) "
            "to node-label, if the node should peer",
        )


def run(ctx: Context) -> None:
    check_control_plane(ctx)
    check_services_advertised(ctx)
    check_peer_configs(ctx)
    check_peer_config_refs(ctx)
    check_node_selectors(ctx)
