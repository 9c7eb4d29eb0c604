"""BGP timers and what graceful restart costs when a node is lost silently.

Measured: docs/FACTS.md#graceful-restart.
"""
from __future__ import annotations

from generators.readback.cilium import CRD_HOLD_MIN, PeerConfig
from generators.readback.frrconf import RouterBgp

from .context import NBIT_SINCE, Context

# FRR's default hold time per `frr defaults` profile.
FRR_DEFAULT_HOLD = {"traditional": 180, "datacenter": 9}


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


def _helper_disabled(router: RouterBgp | None, ctx: Context) -> bool:
    """Whether the gateway is not a graceful-restart helper for the nodes."""
    if router is None:
        return False
    if any(s.text.split()[-1] == "graceful-restart-disable" and not s.text.startswith("no ")
           for s in router.graceful_restart):
        return True
    node_ips = {n.ip for n in ctx.nodes if n.ip}
    nodes = [n for n in router.peers() if not node_ips or n.name in node_ips]
    if not nodes:
        return False

    def disabled(n) -> bool:
        for candidate in (n, router.group_of(n)):
            if candidate is not None and candidate.graceful_restart is not None:
                return candidate.graceful_restart.value == "graceful-restart-disable"
        return False

    return all(disabled(n) for n in nodes)


def _n_bit_off(router: RouterBgp | None) -> bool:
    return router is not None and any(
        s.text.startswith("no bgp graceful-restart notification") for s in router.graceful_restart)


def check_graceful_restart_cost(ctx: Context) -> None:
    router = ctx.router
    supports = ctx.frr_at_least(NBIT_SINCE)
    if supports is False or _helper_disabled(router, ctx) or _n_bit_off(router):
        return
    gw_hold = _gateway_hold(ctx, router)
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
                "new flows hashed to that node are lost meanwhile.",
                f"either a shorter restartTimeSeconds (e.g. {max(hold, 1)}), or ` neighbor <group> "
                "graceful-restart-disable` on the gateway for these peers, or shorter timers; keep it if "
                "hitless agent restarts matter more than fast failover")


def run(ctx: Context) -> None:
    check_timers(ctx)
    check_graceful_restart_cost(ctx)
