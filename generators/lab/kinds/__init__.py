"""Node kinds: one module per kind behind one interface (see base.NodeKind).

The gateway and the client are the same in every fidelity; the cluster nodes' kind is the lab's
fidelity: ``twin`` (GoBGP configured as Cilium would) or ``full`` (real k3s + Cilium).
"""
from __future__ import annotations

from .base import NodeKind
from .client import ClientKind
from .gateway import GatewayKind
from .twin import TwinKind

CLUSTER_KINDS: dict[str, type[NodeKind]] = {"twin": TwinKind}


class FidelityError(ValueError):
    pass


def cluster_kind(fidelity: str) -> NodeKind:
    if fidelity not in CLUSTER_KINDS:
        raise FidelityError(
            f"lab.fidelity {fidelity!r} has no runtime yet: the full fidelity (real k3s and Cilium from the "
            f"k3s_images/ bundle) is not built; use `fidelity: twin` (available: {', '.join(CLUSTER_KINDS)})")
    return CLUSTER_KINDS[fidelity]()


__all__ = ["NodeKind", "GatewayKind", "ClientKind", "TwinKind", "cluster_kind", "FidelityError", "CLUSTER_KINDS"]
