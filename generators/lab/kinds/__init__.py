"""Node kinds: one module per kind behind one interface (see base.NodeKind).

The gateway and the client are the same in every fidelity; the cluster nodes' kind is the lab's
fidelity: ``cilium`` (a real Kubernetes control plane and Cilium's own code) or ``twin`` (GoBGP configured
by our Python twin of Cilium: quick, no Go builds).
"""

from __future__ import annotations

from ...errors import InputError
from ...model import Model
from ..images import ImageSpec
from .base import ClusterKind, NodeAccess, NodeKind
from .cilium import CiliumKind, cilium_spec
from .client import ClientKind, client_spec
from .gateway import GatewayKind, gateway_spec
from .twin import TwinKind, twin_spec

CLUSTER_KINDS: dict[str, type[ClusterKind]] = {"cilium": CiliumKind, "twin": TwinKind}


class FidelityError(InputError):
    pass


def cluster_kind(fidelity: str) -> ClusterKind:
    if fidelity not in CLUSTER_KINDS:
        raise FidelityError(f"lab.fidelity {fidelity!r} has no runtime; available: {', '.join(CLUSTER_KINDS)}")
    return CLUSTER_KINDS[fidelity]()


def lab_kinds(model: Model) -> list[NodeKind]:
    """The lab's kinds: gateway, the fidelity's cluster kind, client."""
    assert model.lab is not None
    return [GatewayKind(), cluster_kind(model.lab.fidelity), ClientKind()]


def specs_for(gateway_frr_version: str) -> list[ImageSpec]:
    """The twin lab's images for a gateway running FRR ``gateway_frr_version``."""
    return [gateway_spec(gateway_frr_version), twin_spec(), client_spec()]


__all__ = [
    "CLUSTER_KINDS",
    "CiliumKind",
    "ClientKind",
    "cilium_spec",
    "ClusterKind",
    "FidelityError",
    "GatewayKind",
    "NodeAccess",
    "NodeKind",
    "TwinKind",
    "client_spec",
    "cluster_kind",
    "gateway_spec",
    "lab_kinds",
    "specs_for",
    "twin_spec",
]
