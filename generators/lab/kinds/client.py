"""The client: the user's laptop on the far side of the gateway."""
from __future__ import annotations

from ... import pki
from ...in_container import DIR as IN_CONTAINER
from ...model import Model
from ..images import IDLE_CHANGES, ImageSpec
from .base import NodeAccess, NodeKind, linux_node

NAME = "client"
CA_PATH = "/etc/lab/ca.pem"
RELAY_DIR = "/opt/lab"  # relay.py: the lab's Kubernetes API, reached from the user's side (generators.lab.tunnel)
PACKAGES = ("tini", "curl", "python3", "iproute2", "iputils-ping", "openssl", "ca-certificates")


def client_spec() -> ImageSpec:
    return ImageSpec(name="client", suite="bookworm", packages=PACKAGES, changes=IDLE_CHANGES,
                     note="the user's laptop beyond the gateway: curl and TLS tools")


class ClientKind(NodeKind):
    role = "client"

    def image_spec(self, model: Model) -> ImageSpec:
        return client_spec()

    def node_names(self, model: Model) -> list[str]:
        return [NAME]

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

    def configure(self, access: NodeAccess) -> list[str]:
        """Trust the lab CA, as a user's kubeconfig trusts the k3s server CA; install the API relay."""
        pki.ensure_ca(access.paths.pki)
        wanted = {CA_PATH: (access.paths.pki / pki.CA_CERT).read_bytes(),
                  f"{RELAY_DIR}/relay.py": (IN_CONTAINER / "relay.py").read_bytes()}
        changed = []
        for path, data in wanted.items():
            res = access.exec(NAME, ["cat", path], timeout=10)
            if res.exit_code == 0 and res.stdout.encode() == data:
                continue
            access.put_files(NAME, {path: data}, mode=0o644)
            changed.append(f"{NAME}: installed {path}")
        return changed
