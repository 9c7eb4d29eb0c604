"""The client: the user's laptop on the far side of the gateway."""
from __future__ import annotations

from ...model import Model
from ..images import ImageSpec, client_spec
from .base import NodeKind, linux_node

NAME = "client"
CA_PATH = "/etc/lab/ca.pem"


class ClientKind(NodeKind):
    role = "client"

    def image_spec(self, model: Model) -> ImageSpec:
        return client_spec()

    def clab_nodes(self, model: Model, image: str) -> dict[str, dict]:
        lab = model.lab
        assert lab is not None
        hosts_line = f"{model.apiserver.address} {model.apiserver.dns_name}"
        return {NAME: linux_node(image, [
            f"ip addr add {lab.client.address}/{lab.client.subnet.prefixlen} dev eth1",
            f"ip route replace default via {lab.client.gateway_address} dev eth1",
            # the apiserver's DNS name resolves inside the lab, as external-dns would publish it
            f"sh -c 'grep -q \" {model.apiserver.dns_name}$\" /etc/hosts || echo \"{hosts_line}\" >> /etc/hosts'",
        ])}
