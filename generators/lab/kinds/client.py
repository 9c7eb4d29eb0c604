"""The client: the user's laptop on the far side of the gateway."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ...model import Model
from ..images import ImageSpec, client_spec
from .base import NodeKind, linux_node

NAME = "client"
CA_PATH = "/etc/lab/ca.pem"

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import LabRuntime


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

    def configure(self, lab: "LabRuntime") -> list[str]:
        """Trust the lab CA, as a user's kubeconfig trusts the k3s server CA."""
        from ...twin.pki import ensure_ca, CA_CERT

        ensure_ca(lab.paths.pki)
        ca = (lab.paths.pki / CA_CERT).read_bytes()
        res = lab.exec(NAME, ["cat", CA_PATH], timeout=10)
        if res.exit_code == 0 and res.stdout.encode() == ca:
            return []
        lab.put_file(NAME, CA_PATH, ca, mode=0o644)
        return [f"{NAME}: installed the lab CA at {CA_PATH}"]
