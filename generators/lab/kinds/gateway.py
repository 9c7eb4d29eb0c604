"""The gateway: FRR brought to the rendered frr.conf's router bgp block (the rack's file, byte for byte) by the
same steps ``rack.apply`` takes on the rack's gateway (``generators.rack.gateway``), and sshd, so the rollout
can be rehearsed against it over SSH."""
from __future__ import annotations

import time

from ...errors import InputError, LabError
from ...model import Model
from ...rack.gateway import apply_gateway, plan_gateway
from ...readback.frrconf import NBIT_SINCE
from ...versions import version_tuple
from ..images import IDLE_CHANGES, ImageError, ImageSpec
from . import sshd
from .base import NET_CAPS, ExecShell, NodeAccess, NodeKind, linux_node

NAME = "ucg"
FRR_LOG = "/var/log/frr/frr.log"
PACKAGES = ("tini", "frr", "frr-pythontools", "iproute2", "iputils-ping", "procps", "tcpdump", "openssh-server")
FRR_START_TIMEOUT_S = 30.0
# Debian's FRR per suite (measured here with debootstrap, late 2026; docs/FACTS.md#frr).
FRR_BY_SUITE = {"bookworm": "8.4.4", "bullseye": "7.5.1"}


class FrrVersionError(InputError, ImageError):
    """A gateway FRR version that is not a version (bad input: exit 2)."""


def _parse_version(version: str) -> tuple[int, int, int]:
    parsed = version_tuple(str(version), strict=True)
    if parsed is None:
        raise FrrVersionError(f"gateway FRR version {version!r} is not a version like '8.4.4' or '8.1'")
    if parsed[0] < 2:
        raise FrrVersionError(f"gateway FRR version {version!r}: FRR versions start at 2.0")
    return parsed


def frr_suite_for(version: str) -> tuple[str, str, str]:
    """Debian suite whose FRR stands in for the gateway's FRR ``version``.

    Returns (suite, Debian's FRR version there, reason). The N-bit (RFC 8538, FRR 8.3+) decides:
    it changes how long a silently lost node stays in the ECMP group.
    """
    v = _parse_version(version)
    shown = ".".join(str(x) for x in v)
    if v >= NBIT_SINCE:
        suite = "bookworm"
        exact = v[:2] == (8, 4)
        reason = (f"gateway FRR {shown} has the graceful-restart N-bit (RFC 8538, FRR 8.3+); "
                  f"Debian bookworm's FRR {FRR_BY_SUITE[suite]} has it too"
                  + ("" if exact else "; other behaviour of that exact release may differ"))
    else:
        suite = "bullseye"
        reason = (f"gateway FRR {shown} predates the N-bit (RFC 8538, FRR 8.3); Debian bullseye's "
                  f"FRR {FRR_BY_SUITE[suite]} lacks it too"
                  + ("" if v[:2] == (7, 5) else "; other behaviour of that exact release may differ")
                  + ". If bullseye's packages are no longer reachable, use gateway FRR >= 8.3 "
                  "(bookworm) and expect N-bit behaviour")
    return suite, FRR_BY_SUITE[suite], reason


def gateway_spec(frr_version: str) -> ImageSpec:
    suite, debian_frr, reason = frr_suite_for(frr_version)
    return ImageSpec(name="gateway", suite=suite, packages=PACKAGES,
                     changes=(*IDLE_CHANGES, f'LABEL k3s-bgp-lab.frr-version="{debian_frr}"'),
                     note=f"FRR {debian_frr} from Debian {suite}: {reason}")


class GatewayKind(NodeKind):
    role = "gateway"

    def image_spec(self, model: Model) -> ImageSpec:
        return gateway_spec(model.gateway.frr_version)

    def node_names(self, model: Model) -> list[str]:
        return [NAME]

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
            # frr.conf is not bound: `write memory` must be able to replace it, as on the rack's gateway
            binds=["frr/daemons:/etc/frr/daemons"],
            # forward between the node segment and the client; hash ECMP on L4 so new connections spread
            sysctls={"net.ipv4.ip_forward": "1", "net.ipv4.fib_multipath_hash_policy": "1"},
        )}

    def log_files(self) -> list[str]:
        return [FRR_LOG]

    def configure(self, access: NodeAccess) -> list[str]:
        changed = sshd.install(access, NAME, str(access.model.gateway.address))
        shell = ExecShell(access, NAME)
        deadline = time.monotonic() + FRR_START_TIMEOUT_S
        while not shell.run("vtysh -c 'show version'", timeout=10).ok:  # FRR starts with the container
            if time.monotonic() > deadline:
                raise LabError(f"{NAME}: FRR's vtysh does not answer {FRR_START_TIMEOUT_S:g} s after deploy",
                               [f"see {FRR_LOG} in the container"])
            time.sleep(0.25)  # poll interval of the condition above
        wanted = (access.paths.rendered / "frr" / "frr.conf").read_text()
        return changed + apply_gateway(shell, plan_gateway(shell, wanted), log=lambda _m: None)
