"""Twin cluster nodes: GoBGP configured the way Cilium configures it, from the rendered resources,
plus the data path Cilium would provide (VIPs on the node, an L4 proxy with active health checks in
front of the apiserver endpoints, a stand-in apiserver and a stand-in Traefik)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ...model import Model
from ..images import ImageSpec, twin_spec
from .base import NodeKind, linux_node

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import LabRuntime


class TwinKind(NodeKind):
    role = "cluster"

    def image_spec(self, model: Model) -> ImageSpec:
        return twin_spec()

    def clab_nodes(self, model: Model, image: str) -> dict[str, dict]:
        prefix = model.subnet.prefixlen
        return {n.name: linux_node(image, [
            f"ip addr add {n.address}/{prefix} dev eth1",
            # the gateway is the nodes' default route, as on the rack
            f"ip route replace default via {model.gateway.address} dev eth1",
        ], sysctls={  # VIPs sit on lo: never answer ARP for them (Cilium puts them on no interface)
            "net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.all.arp_announce": "2"}) for n in model.nodes}

    def configure(self, lab: "LabRuntime") -> list[str]:
        from .twin_runtime import configure_twin

        return configure_twin(lab)

    def log_files(self) -> list[str]:
        from .twin_runtime import LOG_FILES

        return LOG_FILES
