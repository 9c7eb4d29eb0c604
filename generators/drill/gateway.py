"""What the gateway's FRR negotiated with each speaker: the N-bit, restart time, hold time, its helper role.

The neighbor fields are read by ``generators.readback.frrstate`` (FRR 8.4's key names are listed there).
FRR itself sends the N-bit when ``bgp graceful-restart notification`` is on, which is the default from
8.3 (``no bgp graceful-restart notification`` turns it off). The N-bit is *negotiated* when FRR sends it,
the GR capability went both ways, and the peer's N-bit was received.

Whether FRR is a graceful-restart helper for a peer is its ``gracefulRestartInfo.localGrMode`` (FRR 8.4:
``Helper``, ``Restart``, ``Disable``, ``*`` appended when inherited from the global mode). Measured on FRR
8.4.4 (docs/FACTS.md#graceful-restart) with ``neighbor <address> graceful-restart-disable``: ``localGrMode``
is ``Disable`` at once, and FRR keeps no stale routes for that peer from then on; the capability in
``neighborCapabilities`` changes only with the next OPEN (``gracefulRestart: advertisedAndReceived`` until
the session is reset, then no ``gracefulRestart`` key but ``gracefulRestartCapability: received``, with
``remoteGrMode: NotApplicable`` and ``nBit: false``). Graceful restart is therefore *active* for a peer only
when the capability went both ways and the local mode is not ``Disable``.
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


HELPER_MODES = ("Helper", "Restart")  # localGrMode values in which FRR keeps a restarting peer's routes


@dataclass(frozen=True)
class GatewayFacts:
    frr_version: tuple[int, int, int] | None
    sends_n_bit: bool  # FRR advertises the N-bit itself
    peers: dict[str, Neighbor] = field(default_factory=dict)
    local_gr_modes: dict[str, str] = field(default_factory=dict)  # ip -> gracefulRestartInfo.localGrMode

    def helper_for(self, ip: str) -> bool:
        """FRR's local mode lets it keep ``ip``'s routes (no ``localGrMode``: FRR's default, a helper)."""
        mode = self.local_gr_modes.get(ip)
        return mode is None or mode.rstrip("*") in HELPER_MODES

    def gr_active(self, ip: str) -> bool:
        """FRR keeps ``ip``'s routes stale when its session goes down: capability both ways, FRR a helper."""
        peer = self.peers.get(ip)
        return bool(peer and peer.gr_both_ways and self.helper_for(ip))

    def n_bit_negotiated(self, ip: str) -> bool:
        peer = self.peers.get(ip)
        return bool(peer and self.sends_n_bit and peer.gr_both_ways and peer.n_bit_received)

    def to_json(self) -> dict:
        return {
            "frr_version": ".".join(map(str, self.frr_version)) if self.frr_version else None,
            "sends_n_bit": self.sends_n_bit,
            "peers": {
                ip: {
                    **p.__dict__,
                    "n_bit_negotiated": self.n_bit_negotiated(ip),
                    "local_gr_mode": self.local_gr_modes.get(ip),
                    "helper": self.helper_for(ip),
                    "gr_active": self.gr_active(ip),
                }
                for ip, p in self.peers.items()
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
    peers = neighbors(doc)
    return GatewayFacts(
        frr_version=version,
        sends_n_bit=frr_sends_n_bit(version, running_config),
        peers=peers,
        local_gr_modes=_local_gr_modes(doc, peers),
    )


def _local_gr_modes(doc: object, peers: dict[str, Neighbor]) -> dict[str, str]:
    out: dict[str, str] = {}
    for ip in peers:
        entry = doc.get(ip) if isinstance(doc, dict) else None
        gri = entry.get("gracefulRestartInfo") if isinstance(entry, dict) else None
        mode = gri.get("localGrMode") if isinstance(gri, dict) else None
        if isinstance(mode, str) and mode:
            out[ip] = mode
    return out


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
