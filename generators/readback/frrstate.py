"""FRR's and the kernel's state as JSON, read into typed objects: one owner for every such parse.

Standard library only: the drill sampler runs inside the lab's gateway and imports this file from beside
itself (the drill runner copies it there, as it copies ``agent_common.py``).

Key names are FRR 8.4's (``bgpd/bgp_vty.c``, ``zebra/zebra_vty.c``):

- ``show bgp neighbors json``: ``{ip: {bgpState, bgpTimerUpMsec, bgpTimerHoldTimeMsecs,
  bgpTimerKeepAliveIntervalMsecs, connectRetryTimer, neighborCapabilities.gracefulRestart,
  gracefulRestartInfo.{nBit, timers.receivedRestartTimer}}}``. ``gracefulRestartInfo.nBit`` is the N-bit
  (RFC 8538 "Notification" flag) *received* from the peer; FRR fills it only while the session is
  Established and the GR capability went both ways; FRR before 8.3 has no ``nBit`` key at all.
  ``receivedRestartTimer`` is the restart time the peer advertised: what FRR keeps stale routes for.
- ``show bgp summary json``: ``ipv4Unicast.peers[ip].{state, pfxRcd}``.
- ``show bgp ipv4 unicast PREFIX json``: ``paths[].{peer.peerId, nexthops[].ip, stale, valid, bestpath,
  multipath}`` (FRR 8.4 adds ``"stale": true`` to a path kept by graceful restart).
- ``show ip route PREFIX json``: ``{PREFIX: [{protocol, selected, nexthops[].{ip, active, fib}}]}``.
- ``ip -j route``: ``[{dst, gateway}]``, or ``nexthops[].gateway`` (multipath), or only ``nhid`` when
  zebra installed a nexthop object; ``ip -j nexthop show`` resolves those (groups one level deep).
- ``show version``: ``FRRouting X.Y.Z ...``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

ESTABLISHED = "Established"
_FRR_SHOW_VERSION = re.compile(r"FRRouting\s+(\d+)\.(\d+)(?:\.(\d+))?")


def split_json_stream(text: str) -> list[object]:
    """The JSON values printed one after another (vtysh with several ``-c``); junk between is skipped."""
    decoder = json.JSONDecoder()
    values: list[object] = []
    i, n = 0, len(text)
    while i < n:
        start = min((p for p in (text.find("{", i), text.find("[", i)) if p >= 0), default=-1)
        if start < 0:
            break
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            i = start + 1
            continue
        values.append(value)
        i = end
    return values


# ----------------------------------------------------------------------------- sessions
def _seconds(msecs: object) -> float | None:
    return float(msecs) / 1000.0 if isinstance(msecs, (int, float)) else None


@dataclass(frozen=True)
class Neighbor:
    """One neighbor of ``show bgp neighbors json``."""

    ip: str
    state: str
    gr_both_ways: bool
    n_bit_received: bool
    received_restart_time: int | None
    hold_time: float | None  # negotiated, seconds
    keepalive: float | None
    connect_retry: int | None


def neighbor(ip: str, doc: dict) -> Neighbor:
    gri = doc.get("gracefulRestartInfo") or {}
    caps = doc.get("neighborCapabilities") or {}
    timers = gri.get("timers") or {}
    restart = timers.get("receivedRestartTimer")
    return Neighbor(
        ip=ip,
        state=str(doc.get("bgpState", "")),
        gr_both_ways=caps.get("gracefulRestart") == "advertisedAndReceived",
        n_bit_received=bool(gri.get("nBit", False)),
        received_restart_time=int(restart) if isinstance(restart, (int, float)) else None,
        hold_time=_seconds(doc.get("bgpTimerHoldTimeMsecs")),
        keepalive=_seconds(doc.get("bgpTimerKeepAliveIntervalMsecs")),
        connect_retry=int(doc["connectRetryTimer"]) if isinstance(doc.get("connectRetryTimer"), int) else None,
    )


def neighbors(show_bgp_neighbors: object) -> dict[str, Neighbor]:
    """Every neighbor of ``show bgp neighbors json`` (entries without ``bgpState`` are FRR's summary keys)."""
    if not isinstance(show_bgp_neighbors, dict):
        return {}
    return {ip: neighbor(ip, doc) for ip, doc in show_bgp_neighbors.items()
            if isinstance(doc, dict) and "bgpState" in doc}


def session_states(show_bgp_neighbors: object) -> dict[str, str]:
    """Neighbor address -> ``bgpState`` (``"?"`` when FRR gives none)."""
    if not isinstance(show_bgp_neighbors, dict):
        return {}
    return {ip: str(doc.get("bgpState", "?")) for ip, doc in show_bgp_neighbors.items() if isinstance(doc, dict)}


@dataclass(frozen=True)
class SummaryPeer:
    state: str | None
    pfxRcd: int | None  # noqa: N815 - FRR's own key, kept for the samples' JSON


def summary_peers(summary: object) -> dict[str, SummaryPeer]:
    """``show bgp summary json`` -> peer address -> state and prefixes received."""
    peers = (((summary or {}) if isinstance(summary, dict) else {}).get("ipv4Unicast") or {}).get("peers") or {}
    return {ip: SummaryPeer(p.get("state"), p.get("pfxRcd")) for ip, p in peers.items()}


def frr_version_from_show_version(text: str) -> tuple[int, int, int] | None:
    m = _FRR_SHOW_VERSION.search(text or "")
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


# ----------------------------------------------------------------------------- BGP paths and routes
@dataclass(frozen=True)
class BgpPath:
    peer: str | None
    nexthop: str | None
    stale: bool
    valid: bool
    best: bool
    multipath: bool


def bgp_paths(doc: object) -> list[BgpPath]:
    """BGP paths of one prefix (``show bgp ipv4 unicast PREFIX json``); ``[]`` when FRR has none."""
    out = []
    for path in ((doc or {}) if isinstance(doc, dict) else {}).get("paths") or []:
        nexthops = path.get("nexthops") or []
        out.append(BgpPath(peer=(path.get("peer") or {}).get("peerId"),
                           nexthop=nexthops[0].get("ip") if nexthops else None,
                           stale=bool(path.get("stale", False)), valid=bool(path.get("valid", False)),
                           best=bool(path.get("bestpath")), multipath=bool(path.get("multipath", False))))
    return out


@dataclass(frozen=True)
class RibNextHop:
    ip: str
    active: bool
    fib: bool


def rib_next_hops(route_json: object, prefix: str, selected_only: bool = False) -> list[RibNextHop]:
    """Zebra's next-hops of the BGP route for ``prefix`` (``show ip route PREFIX json``).

    With ``selected_only``, only the selected BGP route counts (what ``verify`` judges); otherwise any
    BGP entry (what the sampler records).
    """
    out = []
    doc = route_json if isinstance(route_json, dict) else {}
    for route in doc.get(prefix) or []:
        if selected_only and (route.get("protocol") != "bgp" or not route.get("selected")):
            continue
        if not selected_only and route.get("protocol") not in (None, "bgp"):
            continue
        for nh in route.get("nexthops") or []:
            if nh.get("ip"):
                out.append(RibNextHop(ip=nh["ip"], active=bool(nh.get("active")), fib=bool(nh.get("fib"))))
    return out


def route_next_hops(route_json: object, prefix: str) -> tuple[set[str], set[str]]:
    """(active next-hops of the selected BGP route, those FRR reports installed in the FIB)."""
    hops = {nh.ip for nh in rib_next_hops(route_json, prefix, selected_only=True) if nh.active}
    fib = {nh.ip for nh in rib_next_hops(route_json, prefix, selected_only=True) if nh.active and nh.fib}
    return hops, fib


def nexthop_objects(ip_nexthop_json: object) -> dict[int, list[str]]:
    """``ip -j nexthop show``: id -> gateways, resolving groups one level deep."""
    objs = ip_nexthop_json if isinstance(ip_nexthop_json, list) else []
    by_id = {int(o["id"]): o for o in objs if isinstance(o, dict) and "id" in o}
    out: dict[int, list[str]] = {}
    for nid, obj in by_id.items():
        if obj.get("gateway"):
            out[nid] = [obj["gateway"]]
        elif obj.get("group"):
            out[nid] = [by_id[int(m["id"])]["gateway"] for m in obj["group"]
                        if int(m["id"]) in by_id and by_id[int(m["id"])].get("gateway")]
    return out


def needs_nexthop_objects(ip_route_json: object) -> bool:
    """Whether some route names only a nexthop id (then ``ip -j nexthop show`` is needed to resolve it)."""
    routes = ip_route_json if isinstance(ip_route_json, list) else []
    return any(isinstance(r, dict) and r.get("nhid") is not None and not r.get("gateway") and not r.get("nexthops")
               for r in routes)


def kernel_next_hops(ip_route_json: object, dst: str | None = None,
                     objects: dict[int, list[str]] | None = None) -> set[str]:
    """Next-hops from ``ip -j route`` output: one gateway, a multipath list, or a nexthop id.

    ``dst``: only routes to that address (``a.b.c.d`` or ``a.b.c.d/32``); None: every route given.
    """
    out: set[str] = set()
    for route in ip_route_json if isinstance(ip_route_json, list) else []:
        if not isinstance(route, dict):
            continue
        if dst is not None and route.get("dst") not in (dst.split("/")[0], dst if "/" in dst else f"{dst}/32"):
            continue
        found = set()
        if route.get("gateway"):
            found.add(route["gateway"])
        for nh in route.get("nexthops") or []:
            if nh.get("gateway"):
                found.add(nh["gateway"])
        if not found and route.get("nhid") is not None and objects:
            found.update(objects.get(int(route["nhid"]), []))
        out |= found
    return out
