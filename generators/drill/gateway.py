"""What the gateway's FRR negotiated with each speaker: the N-bit, restart time, hold time.

The neighbor fields are read by ``generators.readback.frrstate`` (FRR 8.4's key names are listed there).
FRR itself sends the N-bit when ``bgp graceful-restart notification`` is on, which is the default from
8.3 (``no bgp graceful-restart notification`` turns it off). The N-bit is *negotiated* when FRR sends it,
the GR capability went both ways, and the peer's N-bit was received.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from generators.drill.lab_api import Lab
from generators.errors import LabToolError
from generators.readback.frrconf import supports_n_bit
from generators.readback.frrstate import Neighbor, frr_version_from_show_version, neighbors


class GatewayError(LabToolError):
    """The gateway's FRR could not be read."""


@dataclass(frozen=True)
class GatewayFacts:
    frr_version: tuple[int, int, int] | None
    sends_n_bit: bool  # FRR advertises the N-bit itself
    peers: dict[str, Neighbor] = field(default_factory=dict)

    def n_bit_negotiated(self, ip: str) -> bool:
        peer = self.peers.get(ip)
        return bool(peer and self.sends_n_bit and peer.gr_both_ways and peer.n_bit_received)

    def to_json(self) -> dict:
        return {
            "frr_version": ".".join(map(str, self.frr_version)) if self.frr_version else None,
            "sends_n_bit": self.sends_n_bit,
            "peers": {
                ip: {**p.__dict__, "n_bit_negotiated": self.n_bit_negotiated(ip)} for ip, p in self.peers.items()
            },
        }


def frr_sends_n_bit(version: tuple[int, int, int] | None, running_config: str) -> bool:
    if not supports_n_bit(version):
        return False
    return not re.search(r"^\s*no bgp graceful-restart notification\s*$", running_config or "", re.MULTILINE)


def parse_gateway_facts(neighbors_json: str, show_version: str, running_config: str) -> GatewayFacts:
    try:
        doc = json.loads(neighbors_json) if neighbors_json.strip() else {}
    except json.JSONDecodeError as exc:
        raise GatewayError(f"'show bgp neighbors json' is not JSON: {exc}") from exc
    version = frr_version_from_show_version(show_version)
    return GatewayFacts(frr_version=version, sends_n_bit=frr_sends_n_bit(version, running_config), peers=neighbors(doc))


def _vtysh(lab: Lab, command: str) -> str:
    res = lab.exec("ucg", ["vtysh", "-c", command], timeout=15)
    if res.exit_code != 0:
        raise GatewayError(
            f"vtysh -c {command!r} in ucg exited {res.exit_code}: {res.stderr.strip()[:300]}"
            " -- is FRR running in the lab's gateway? (invoke status)"
        )
    return res.stdout


def read_gateway_facts(lab: Lab) -> GatewayFacts:
    return parse_gateway_facts(
        _vtysh(lab, "show bgp neighbors json"), _vtysh(lab, "show version"), _vtysh(lab, "show running-config")
    )
