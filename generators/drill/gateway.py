"""What the gateway's FRR negotiated with each speaker: the N-bit, restart time, hold time.

Key names are FRR 8.4's (``bgpd/bgp_vty.c``, ``show bgp neighbors json``):

- ``gracefulRestartInfo.nBit`` -- the N-bit (RFC 8538 "Notification" flag) *received* from the peer;
  FRR fills it only while the session is Established and GR capability went both ways. FRR itself
  sends the N-bit when ``bgp graceful-restart notification`` is on, which is the default from 8.3
  (``no bgp graceful-restart notification`` turns it off). The N-bit is *negotiated* when both hold.
  FRR before 8.3 has no ``nBit`` key at all and never sends it.
- ``gracefulRestartInfo.timers.receivedRestartTimer`` -- the restart time the peer advertised, which
  is what FRR keeps stale routes for as helper.
- ``neighborCapabilities.gracefulRestart == "advertisedAndReceived"`` -- GR capability both ways.
- ``bgpTimerHoldTimeMsecs`` / ``bgpTimerKeepAliveIntervalMsecs`` -- negotiated timers.
- ``connectRetryTimer`` -- FRR's own connect-retry time (seconds; default 120).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from generators.drill.lab_api import Lab

FRR_VERSION = re.compile(r"FRRouting\s+(\d+)\.(\d+)(?:\.(\d+))?")
N_BIT_SINCE = (8, 3)


class GatewayError(RuntimeError):
    """The gateway's FRR could not be read."""


@dataclass(frozen=True)
class PeerFacts:
    ip: str
    state: str
    gr_both_ways: bool
    n_bit_received: bool
    received_restart_time: int | None
    hold_time: float | None  # negotiated, seconds
    keepalive: float | None
    connect_retry: int | None


@dataclass(frozen=True)
class GatewayFacts:
    frr_version: tuple[int, int, int] | None
    sends_n_bit: bool  # FRR advertises the N-bit itself
    peers: dict[str, PeerFacts] = field(default_factory=dict)

    def n_bit_negotiated(self, ip: str) -> bool:
        peer = self.peers.get(ip)
        return bool(peer and self.sends_n_bit and peer.gr_both_ways and peer.n_bit_received)

    def to_json(self) -> dict:
        return {
            "frr_version": ".".join(map(str, self.frr_version)) if self.frr_version else None,
            "sends_n_bit": self.sends_n_bit,
            "peers": {ip: {**p.__dict__, "n_bit_negotiated": self.n_bit_negotiated(ip)} for ip, p in self.peers.items()},
        }


def parse_frr_version(show_version: str) -> tuple[int, int, int] | None:
    m = FRR_VERSION.search(show_version or "")
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def frr_sends_n_bit(version: tuple[int, int, int] | None, running_config: str) -> bool:
    if version is None or version[:2] < N_BIT_SINCE:
        return False
    return not re.search(r"^\s*no bgp graceful-restart notification\s*$", running_config or "", re.MULTILINE)


def _seconds(msecs: object) -> float | None:
    return float(msecs) / 1000.0 if isinstance(msecs, (int, float)) else None


def parse_peer(ip: str, doc: dict) -> PeerFacts:
    gri = doc.get("gracefulRestartInfo") or {}
    caps = doc.get("neighborCapabilities") or {}
    timers = gri.get("timers") or {}
    restart = timers.get("receivedRestartTimer")
    return PeerFacts(
        ip=ip,
        state=str(doc.get("bgpState", "")),
        gr_both_ways=caps.get("gracefulRestart") == "advertisedAndReceived",
        n_bit_received=bool(gri.get("nBit", False)),
        received_restart_time=int(restart) if isinstance(restart, (int, float)) else None,
        hold_time=_seconds(doc.get("bgpTimerHoldTimeMsecs")),
        keepalive=_seconds(doc.get("bgpTimerKeepAliveIntervalMsecs")),
        connect_retry=int(doc["connectRetryTimer"]) if isinstance(doc.get("connectRetryTimer"), int) else None,
    )


def parse_gateway_facts(neighbors_json: str, show_version: str, running_config: str) -> GatewayFacts:
    try:
        neighbors = json.loads(neighbors_json) if neighbors_json.strip() else {}
    except json.JSONDecodeError as exc:
        raise GatewayError(f"'show bgp neighbors json' is not JSON: {exc}") from exc
    version = parse_frr_version(show_version)
    peers = {ip: parse_peer(ip, doc) for ip, doc in neighbors.items() if isinstance(doc, dict) and "bgpState" in doc}
    return GatewayFacts(frr_version=version, sends_n_bit=frr_sends_n_bit(version, running_config), peers=peers)


def _vtysh(lab: Lab, command: str) -> str:
    res = lab.exec("ucg", ["vtysh", "-c", command], timeout=15)
    if res.exit_code != 0:
        raise GatewayError(f"vtysh -c {command!r} in ucg exited {res.exit_code}: {res.stderr.strip()[:300]}"
                           " -- is FRR running in the lab's gateway? (invoke status)")
    return res.stdout


def read_gateway_facts(lab: Lab) -> GatewayFacts:
    return parse_gateway_facts(_vtysh(lab, "show bgp neighbors json"), _vtysh(lab, "show version"),
                               _vtysh(lab, "show running-config"))
