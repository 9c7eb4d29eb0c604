"""The gateway: FRR with the rendered frr.conf (the rack's file, byte for byte)."""
from __future__ import annotations

from ...model import Model
from ..images import ImageSpec, gateway_spec
from .base import NET_CAPS, NodeKind, linux_node

NAME = "ucg"
FRR_LOG = "/var/log/frr/frr.log"


class GatewayKind(NodeKind):
    role = "gateway"

    def image_spec(self, model: Model) -> ImageSpec:
        return gateway_spec(model.gateway.frr_version)

    def clab_nodes(self, model: Model, image: str) -> dict[str, dict]:
        lab = model.lab
        assert lab is not None
        prefix = model.subnet.prefixlen
        return {NAME: linux_node(
            image,
            [
                f"ip addr add {model.gateway.address}/{prefix} dev eth1",
                f"ip addr add {lab.client.gateway_address}/{lab.client.subnet.prefixlen} dev eth2",
                "/usr/lib/frr/frrinit.sh start",
            ],
            caps=[*NET_CAPS, "SYS_ADMIN"],  # bgpd and zebra need SYS_ADMIN (netns/capabilities) to start
            binds=["frr/frr.conf:/etc/frr/frr.conf", "frr/daemons:/etc/frr/daemons"],
            # forward between the node segment and the client; hash ECMP on L4 so new connections spread
            sysctls={"net.ipv4.ip_forward": "1", "net.ipv4.fib_multipath_hash_policy": "1"},
        )}

    def log_files(self) -> list[str]:
        return [FRR_LOG]
