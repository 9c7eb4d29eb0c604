"""BGP timers and what graceful restart costs when a node is lost silently.

Measured: docs/FACTS.md#graceful-restart.
"""
from __future__ import annotations

from generators.readback.cilium import CRD_HOLD_MIN, PeerConfig
from generators.readback.frrconf import Neighbor, RouterBgp

from .context import NBIT_SINCE, Context

# FRR's default hold time per `frr defaults` profile.
FRR_DEFAULT_HOLD = {"traditional": 180, "datacenter": 9}
# FRR applies a peer-group's `graceful-restart-disable` to its members from 10.2 on (FRRouting/frr#17501, backported
# to stable/10.2); FRR 8.4.4 accepts the line and ignores it for the members (measured: docs/FACTS.md#graceful-restart).
PEER_GROUP_GR_SINCE = (10, 2, 0)


def check_timers(ctx: Context) -> None:
    for doc in ctx.of_kind("CiliumBGPPeerConfig"):
        config = PeerConfig.from_doc(doc)
        hold, keepalive = config.hold, config.keepalive
        if hold is None or keepalive is None:
            continue
        if hold < CRD_HOLD_MIN:
            ctx.add("TIMER-HOLD", doc.file, doc.ref, "spec.timers.holdTimeSeconds",
                    f"holdTimeSeconds is {hold}: the CRD's minimum is 3, so the apiserver rejects the PeerConfig "
                    "and the peers fall back to no PeerConfig at all.",
                    "use at least 3 (the seed uses 15 with keepalive 5)")
            continue
        if keepalive * 3 > hold:
            ctx.add("TIMER-KEEPALIVE", doc.file, doc.ref, "spec.timers.keepAliveTimeSeconds",
                    f"keepalive {keepalive} s is more than a third of hold {hold} s: "
                    + ("the hold timer expires before the next keepalive, so the session flaps continuously."
                       if keepalive >= hold else
                       "one or two lost keepalives expire the hold timer and reset the session."),
                    f"use keepAliveTimeSeconds <= {hold // 3} (hold/3)")


def _gateway_hold(ctx: Context, router: RouterBgp | None) -> int | None:
    """The hold time FRR offers the nodes (the session uses the smaller of both offers)."""
    if router is None:
        return None
    profile = ctx.frr.defaults.value if ctx.frr and ctx.frr.defaults else "traditional"
    holds = []
    node_ips = {n.ip for n in ctx.nodes if n.ip}
    for neighbor in router.peers():
        if node_ips and neighbor.name not in node_ips:
            continue
        timers = router.effective_timers(neighbor)
        holds.append(timers[1] if timers else FRR_DEFAULT_HOLD.get(profile, 180))
    return min(holds) if holds else None


def _node_neighbors(router: RouterBgp | None, ctx: Context) -> list[Neighbor]:
    if router is None:
        return []
    node_ips = {n.ip for n in ctx.nodes if n.ip}
    return [n for n in router.peers() if not node_ips or n.name in node_ips]


def _helper_state(router: RouterBgp | None, ctx: Context) -> str:
    """``disabled`` (the gateway is no graceful-restart helper for any node), ``helper``, or ``group-ignored``.

    ``group-ignored``: the nodes' peer-group says ``graceful-restart-disable`` but the gateway's FRR does not apply
    a peer-group's graceful-restart mode to its members (before 10.2, FRRouting/frr#17501; measured on 8.4.4: the
    members stay ``localGrMode: Helper*`` and a lost node's routes stay stale for hold + restart). An unknown
    version counts as not applying it, as the UCG-Fiber's FRR 8.x does not.
    """
    if router is None:
        return "helper"
    if any(s.text.split()[-1] == "graceful-restart-disable" and not s.text.startswith("no ")
           for s in router.graceful_restart):
        return "disabled"
    nodes = _node_neighbors(router, ctx)
    if not nodes:
        return "helper"
    group_applies = ctx.frr_at_least(PEER_GROUP_GR_SINCE) is True
    ignored = []

    def disabled(n: Neighbor) -> bool:
        if n.graceful_restart is not None:
            return n.graceful_restart.value == "graceful-restart-disable"
        group = router.group_of(n)
        if group is None or group.graceful_restart is None:
            return False
        if group.graceful_restart.value == "graceful-restart-disable" and not group_applies:
            ignored.append(n.name)
            return False
        return group.graceful_restart.value == "graceful-restart-disable"

    if all([disabled(n) for n in nodes]):
        return "disabled"
    return "group-ignored" if ignored else "helper"


def _n_bit_off(router: RouterBgp | None) -> bool:
    return router is not None and any(
        s.text.startswith("no bgp graceful-restart notification") for s in router.graceful_restart)


def check_graceful_restart_cost(ctx: Context) -> None:
    router = ctx.router
    supports = ctx.frr_at_least(NBIT_SINCE)
    helper = _helper_state(router, ctx)
    if supports is False or helper == "disabled" or _n_bit_off(router):
        return
    gw_hold = _gateway_hold(ctx, router)
    names = [n.name for n in _node_neighbors(router, ctx)] or ["<node address>"]
    frr_lines = f"`neighbor {names[0]} graceful-restart-disable`" + (
        f" (one line per node: {', '.join(names)})" if len(names) > 1 else "")
    ignored = ("" if helper != "group-ignored" else
               " The peer-group's `graceful-restart-disable` does not change this: FRR before 10.2 does not apply a "
               "peer-group's graceful-restart mode to its members (measured on 8.4.4: they stay helpers).")
    for doc in ctx.of_kind("CiliumBGPPeerConfig"):
        config = PeerConfig.from_doc(doc)
        if not config.gr_enabled:
            continue
        restart, hold = config.restart_time, config.hold
        if restart is None or hold is None:
            continue
        if gw_hold is not None:
            hold = min(hold, gw_hold)
        if restart <= hold:
            continue
        version = (f"FRR {ctx.frr_version.value} (from {ctx.frr_version.source}) supports"
                   if supports else "the gateway's FRR version is unknown (no --frr-version, no `frr version` line "
                   "in frr.conf); assuming 8.3 or later, which supports")
        ctx.add("TIMER-GR-COST", doc.file, doc.ref, "spec.gracefulRestart.restartTimeSeconds",
                f"graceful restart is on with restartTimeSeconds {restart} and {version} the N-bit (RFC 8538): "
                f"when a node is lost silently (link cut, crash), the gateway keeps its routes stale in the ECMP "
                f"group for up to hold + restart = {hold} + {restart} = {hold + restart} s instead of {hold} s; "
                "new flows hashed to that node are lost meanwhile." + ignored,
                f"either a shorter restartTimeSeconds (e.g. {max(hold, 1)}), or make the gateway no graceful-restart "
                f"helper for the nodes: `gateway.graceful_restart: disabled` in the inventory, which renders "
                f"{frr_lines} in the gateway's router bgp block (a lost node then leaves at hold expiry; a speaker "
                "crash or agent restart withdraws its routes at once), or shorter timers; keep it if hitless agent "
                "restarts matter more than fast failover")


def run(ctx: Context) -> None:
    check_timers(ctx)
    check_graceful_restart_cost(ctx)
