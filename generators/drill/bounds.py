"""Expected bounds per scenario and measure, from the design's timers and what FRR negotiated (pure).

The FRR and GoBGP behaviour they follow is in docs/FACTS.md#graceful-restart. Stale periods follow what FRR
reports per session (``generators.drill.gateway``): only when the GR capability went both ways *and* FRR is a
helper for the node (``localGrMode`` not ``Disable``) does a silent loss, crash or restart keep its routes; with
the gateway's helper role off (``gateway.graceful_restart: disabled``) every one of them withdraws at hold
expiry or at once, whatever the N-bit.

Every bound carries the ``reason`` it follows from. Measures (seconds unless said otherwise):

- ``detect``: fault start -> the node's next-hop leaves the gateway FIB (BGP scenarios), or -> the
  last failed apiserver attempt (``apiserver-down``: health checks took the backend out).
- ``stale``: fault start -> FRR marks the node's paths stale (graceful restart helper).
- ``loss_window:<vip>``: first -> last failed attempt after the fault started.
- ``longest_burst:<vip>``: the longest run of failed attempts (scenarios whose data plane stays up).
- ``failed:<vip>``: number of failed attempts (count).
- ``recovery``: fault undone -> the gateway FIB is back to its baseline next-hops (BGP scenarios), or
  -> the node answers apiserver attempts again (``apiserver-down``).
- ``others_served``: every other node answered during the fault (boolean).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from generators.drill.design import BgpTimers, ProxyTimers
from generators.drill.gateway import GatewayFacts
from generators.versions import GOBGP_VERSION, version_tuple

DEFAULT_SPEAKER_VERSION = version_tuple(GOBGP_VERSION) or (0, 0, 0)

# Linux SYN retransmissions (tcp_syn_retries = 6, initial RTO 1 s): sends at these offsets.
SYN_SENDS = (0, 1, 3, 7, 15, 31, 63)
GOBGP_IDLE_HOLD = 5.0  # Cilium sets idle-hold-time-after-reset to 5 s
GOBGP_FIRST_CONNECT = 2.0  # GoBGP's connect loop: first dial after a random 1-2 s
GOBGP_HARD_RESET_SINCE = (3, 26, 0)
FRR_DEFAULT_CONNECT_RETRY = 120.0
PROCESSING_SLACK = 1.0  # FRR/zebra/kernel processing and timer granularity


@dataclass(frozen=True)
class Bound:
    measure: str
    reason: str
    low: float | None = None
    high: float | None = None
    expect: bool | None = None  # boolean measures
    unit: str = "s"

    def check(self, value: float | bool | None) -> str:
        """``inside`` / ``outside`` / ``not measured`` / ``no bound``."""
        if value is None:
            return "not measured"
        if self.expect is not None:
            return "inside" if bool(value) == self.expect else "outside"
        if self.low is None and self.high is None:
            return "no bound"
        if self.low is not None and float(value) < self.low:
            return "outside"
        if self.high is not None and float(value) > self.high:
            return "outside"
        return "inside"

    def describe(self) -> str:
        if self.expect is not None:
            return "yes" if self.expect else "no"
        unit = "" if self.unit == "count" else " s"
        if self.low is not None and self.high is not None:
            return f"{self.low:.1f}..{self.high:.1f}{unit}"
        if self.high is not None:
            return f"<= {self.high:.1f}{unit}" if unit else f"<= {self.high:.0f}"
        if self.low is not None:
            return f">= {self.low:.1f}{unit}"
        return "-"

    def to_json(self) -> dict:
        return {
            "measure": self.measure,
            "low": self.low,
            "high": self.high,
            "expect": self.expect,
            "unit": self.unit,
            "reason": self.reason,
            "text": self.describe(),
        }


@dataclass(frozen=True)
class BoundInputs:
    bgp: BgpTimers
    health: ProxyTimers | None
    gr_active: bool  # FRR keeps the node's routes stale on a restart: GR capability both ways, FRR a helper
    n_bit: bool  # N-bit negotiated (both sides)
    hold: float  # negotiated hold time
    keepalive: float
    restart: float  # restart time the speaker advertised (FRR keeps stale paths that long)
    probe_interval: float
    probe_timeout: float
    sample_interval: float
    node_count: int
    frr_connect_retry: float = FRR_DEFAULT_CONNECT_RETRY
    speaker_version: tuple[int, int, int] = DEFAULT_SPEAKER_VERSION
    gateway_helper: bool = True  # FRR's localGrMode for the node is not Disable (no graceful-restart-disable)
    stop_sends_cease: bool = True  # a graceful speaker stop sends a Cease (GoBGP); Cilium's agent only closes

    @property
    def tolerance(self) -> float:
        """What a control-plane time can exceed its timer by: processing plus one sampling interval."""
        return PROCESSING_SLACK + self.sample_interval

    def to_json(self) -> dict:
        return {
            "hold": self.hold,
            "keepalive": self.keepalive,
            "restart": self.restart,
            "gr_active": self.gr_active,
            "gateway_helper": self.gateway_helper,
            "stop_sends_cease": self.stop_sends_cease,
            "n_bit": self.n_bit,
            "connect_retry_frr": self.frr_connect_retry,
            "speaker_version": ".".join(map(str, self.speaker_version)),
            "probe_interval": self.probe_interval,
            "probe_timeout": self.probe_timeout,
            "sample_interval": self.sample_interval,
            "tolerance": self.tolerance,
            "health_check": None if self.health is None else dict(self.health.__dict__),
            "bgp_source": self.bgp.source,
        }


@dataclass(frozen=True)
class ScenarioBounds:
    scenario: str
    bounds: dict[str, Bound] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"scenario": self.scenario, "bounds": {k: b.to_json() for k, b in self.bounds.items()}}


def _speaker_version(text: str) -> tuple[int, int, int]:
    parsed = version_tuple(text)
    if parsed is None:
        raise ValueError(f"speaker version {text!r} is not a version like 3.37.0")
    return parsed


def syn_gap(connect_retry: float) -> float:
    """Longest time no SYN is on the wire while a side keeps restarting its connect every ``connect_retry`` s."""
    sends = [t for t in SYN_SENDS if t < connect_retry]
    gaps = [b - a for a, b in zip(sends, sends[1:], strict=False)] + [connect_retry - sends[-1]]
    return float(max(gaps))


def hc_detect_high(inp: BoundInputs, silent: bool = False) -> float | None:
    """Worst time until every proxy has marked a dead backend unhealthy.

    The first failing check comes within one interval (+ jitter) of the fault. A refused connection
    fails a check at once; a silent backend (power loss) fails it only at the check timeout, and the
    next check is scheduled an interval after that, so each failed check costs interval + timeout.
    """
    hc = inp.health
    if hc is None:
        return None
    per_check = hc.interval + hc.interval_jitter + (hc.timeout if silent else 0.0)
    first = hc.interval + hc.interval_jitter
    return first + hc.unhealthy_threshold * per_check + (0.0 if silent else hc.timeout) + inp.tolerance


def hc_reason(hc: ProxyTimers, silent: bool = False) -> str:
    each = f"each failing at its {hc.timeout:g} s timeout" if silent else "each refused at once (or up to the timeout)"
    return (
        f"health checks mark a backend unhealthy after {hc.unhealthy_threshold} failed checks every "
        f"{hc.interval:g} s (+ up to {hc.interval_jitter:g} s jitter), {each}"
    )


_NOT_HELPER = "the gateway is no graceful-restart helper for this node (graceful-restart-disable: localGrMode Disable)"


def _no_gr(inp: BoundInputs, what: str) -> str:
    """Why the routes go at once: the gateway is no helper, or graceful restart was not negotiated."""
    if not inp.gateway_helper:
        return f"{_NOT_HELPER}: {what} withdraws the routes at once"
    return f"no graceful restart: {what} withdraws the routes at once"


def _silent_loss_detect(inp: BoundInputs) -> Bound:
    tol = inp.tolerance
    if inp.gr_active and inp.n_bit:
        return Bound(
            "detect",
            low=max(0.0, inp.hold - inp.keepalive + inp.restart - tol),
            high=inp.hold + inp.restart + tol,
            reason=(
                f"N-bit negotiated: FRR treats the hold-timer expiry as a restart and keeps the stale "
                f"routes for hold + restart ({inp.hold:g} + {inp.restart:g} s)"
            ),
        )
    why = f"the hold timer ({inp.hold:g} s) expires hold - keepalive .. hold after the last keepalive"
    if inp.gr_active:
        why += "; without the N-bit the hold-timer NOTIFICATION ends graceful restart, so no stale period"
    elif not inp.gateway_helper:
        why += f"; {_NOT_HELPER}, so no stale period even with the N-bit"
    return Bound("detect", low=max(0.0, inp.hold - inp.keepalive - tol), high=inp.hold + tol, reason=why)


def _in_flight(inp: BoundInputs, vip: str, why: str) -> Bound:
    return Bound(
        f"longest_burst:{vip}",
        high=inp.probe_timeout + inp.probe_interval,
        reason=f"{why}; only connections in flight while the ECMP group changes may fail",
    )


def _speaker_recovery(inp: BoundInputs) -> Bound:
    return Bound(
        "recovery",
        high=GOBGP_FIRST_CONNECT + inp.tolerance,
        reason="the restarted speaker dials 1-2 s after start; updates follow at once (MRAI 0)",
    )


def node_power_loss(inp: BoundInputs) -> ScenarioBounds:
    detect = _silent_loss_detect(inp)
    assert detect.high is not None
    apis_high = detect.high
    apis_reason = detect.reason
    hc_high = hc_detect_high(inp, silent=True)
    if hc_high is not None and inp.health is not None:
        apis_high = max(apis_high, hc_high)
        apis_reason += f"; through the other nodes' proxies: {hc_reason(inp.health, silent=True)}"
    gap = syn_gap(inp.frr_connect_retry)
    return ScenarioBounds(
        "node-power-loss",
        {
            "detect": detect,
            "loss_window:traefik": Bound(
                "loss_window:traefik",
                high=detect.high + inp.probe_timeout,
                reason="new flows hashed to the dead node fail until its next-hop leaves the FIB: " + detect.reason,
            ),
            "loss_window:apiserver": Bound(
                "loss_window:apiserver",
                high=apis_high + inp.probe_timeout,
                reason=apis_reason + "; the window ends when the node is reachable again (what its returning "
                "apiserver costs is failed_after_undo)",
            ),
            "recovery": Bound(
                "recovery",
                high=gap + inp.tolerance,
                reason=(
                    f"after the link returns, FRR's pending connect (restarted every "
                    f"{inp.frr_connect_retry:g} s, SYN back-off 1, 2, 4, ... s) gets through within "
                    f"{gap:g} s; OPEN and updates follow at once (MRAI 0)"
                ),
            ),
            "others_served": Bound(
                "others_served",
                expect=True,
                unit="bool",
                reason="the other nodes keep their sessions, routes and backends",
            ),
        },
    )


def speaker_crash(inp: BoundInputs, down_for: float | None = None) -> ScenarioBounds:
    """``down_for``: the speaker is started again after that many seconds (None: once its routes are gone)."""
    tol = inp.tolerance
    bounds: dict[str, Bound] = {}
    back_in_time = down_for is not None and down_for + GOBGP_FIRST_CONNECT + tol < inp.restart
    if inp.gr_active and back_in_time:
        bounds["stale"] = Bound(
            "stale",
            high=tol,
            reason="the killed speaker's socket closes at once; FRR, a graceful-restart helper, marks its paths stale",
        )
        bounds["detect"] = Bound(
            "detect",
            low=down_for,
            reason=(
                f"the speaker is back after {down_for:g} s, within the {inp.restart:g} s restart "
                f"time: graceful restart keeps its next-hop in the FIB throughout"
            ),
        )
    elif inp.gr_active:
        bounds["stale"] = Bound(
            "stale",
            high=tol,
            reason="the killed speaker's socket closes at once; FRR, a graceful-restart helper, marks its paths stale",
        )
        bounds["detect"] = Bound(
            "detect",
            low=max(0.0, inp.restart - tol),
            high=inp.restart + tol,
            reason=(
                f"graceful restart kept stale routes for the restart time the speaker advertised ({inp.restart:g} s)"
            ),
        )
    else:
        bounds["detect"] = Bound("detect", high=tol, reason=_no_gr(inp, "the closed session"))
    why = "the node's data plane stays up while its speaker is down"
    bounds["longest_burst:traefik"] = _in_flight(inp, "traefik", why)
    bounds["longest_burst:apiserver"] = _in_flight(inp, "apiserver", why)
    bounds["recovery"] = _speaker_recovery(inp)
    bounds["others_served"] = Bound("others_served", expect=True, unit="bool", reason="only one speaker is down")
    return ScenarioBounds("speaker-crash", bounds)


def speaker_graceful_stop(inp: BoundInputs) -> ScenarioBounds:
    if not inp.stop_sends_cease:
        # the session just closes, as when the speaker is killed: the crash's bounds, under this name
        crash = speaker_crash(inp)
        for name, b in crash.bounds.items():
            if name in ("stale", "detect"):
                crash.bounds[name] = replace(b, reason="the speaker's stop sends no Cease (Cilium keeps its BGP "
                                             "servers on shutdown), so the session just closes: " + b.reason)
        return ScenarioBounds("speaker-graceful-stop", crash.bounds)
    tol = inp.tolerance
    version = ".".join(map(str, inp.speaker_version))
    if not inp.gr_active:
        detect = Bound("detect", high=tol, reason=_no_gr(inp, "the Cease"))
    elif not inp.n_bit:
        detect = Bound("detect", high=tol, reason="no N-bit: a NOTIFICATION ends the session without graceful restart")
    elif inp.speaker_version >= GOBGP_HARD_RESET_SINCE:
        detect = Bound(
            "detect",
            high=tol,
            reason=(
                f"N-bit negotiated and GoBGP {version} (>= 3.26) sends its Cease as "
                "a Hard Reset: FRR flushes the routes at once"
            ),
        )
    else:
        detect = Bound(
            "detect",
            low=max(0.0, inp.restart - tol),
            high=inp.restart + tol,
            reason=(
                f"GoBGP {version} (< 3.26) sends a plain Cease; with the N-bit FRR treats it as a "
                f"restart and keeps stale routes for the restart time ({inp.restart:g} s)"
            ),
        )
    why = "the node's data plane stays up while its speaker is stopped"
    return ScenarioBounds(
        "speaker-graceful-stop",
        {
            "detect": detect,
            "longest_burst:traefik": _in_flight(inp, "traefik", why),
            "longest_burst:apiserver": _in_flight(inp, "apiserver", why),
            "recovery": _speaker_recovery(inp),
            "others_served": Bound("others_served", expect=True, unit="bool", reason="only one speaker is down"),
        },
    )


def apiserver_down(inp: BoundInputs) -> ScenarioBounds:
    hc = inp.health
    bounds: dict[str, Bound] = {}
    if hc is None:
        missing = "no health check in the rendered CCEC: nothing takes a dead apiserver out"
        bounds["detect"] = Bound("detect", reason=missing)
        bounds["loss_window:apiserver"] = Bound("loss_window:apiserver", reason=missing)
        bounds["recovery"] = Bound("recovery", reason=missing)
    else:
        high = hc_detect_high(inp)
        assert high is not None
        bounds["detect"] = Bound("detect", high=high + inp.probe_interval, reason=hc_reason(hc))
        bounds["loss_window:apiserver"] = Bound(
            "loss_window:apiserver",
            high=high + inp.probe_timeout,
            reason="attempts the proxies still send to the dead backend fail: " + hc_reason(hc),
        )
        bounds["recovery"] = Bound(
            "recovery",
            high=hc.healthy_threshold * (hc.interval + hc.interval_jitter)
            + hc.timeout
            + inp.node_count * inp.probe_interval
            + inp.tolerance,
            reason=(
                f"a backend is healthy again after {hc.healthy_threshold} passing check(s) every {hc.interval:g} s; "
                f"round robin sends a new connection to it within {inp.node_count} attempts"
            ),
        )
    bounds["failed:traefik"] = Bound(
        "failed:traefik", high=0, unit="count", reason="the Traefik VIP does not depend on the apiserver"
    )
    bounds["others_served"] = Bound("others_served", expect=True, unit="bool", reason="only one apiserver is down")
    return ScenarioBounds("apiserver-down", bounds)


def gateway_restart_recovery(inp: BoundInputs, restart_duration: float | None) -> Bound:
    """Recovery after FRR restarts, measured from the end of the restart.

    The speakers (Cilium's GoBGP does not listen for BGP) reset, wait their idle hold, then dial
    1-2 s later; a refused dial is retried only after connect-retry .. 2 x connect-retry.
    """
    first_dial = GOBGP_IDLE_HOLD + GOBGP_FIRST_CONNECT
    d = restart_duration or 0.0
    if d + PROCESSING_SLACK <= GOBGP_IDLE_HOLD + 1.0:  # FRR listens again before the first dial
        return Bound(
            "recovery",
            high=max(0.0, first_dial - d) + inp.tolerance,
            reason=(
                f"each speaker waits its idle hold ({GOBGP_IDLE_HOLD:g} s, set by Cilium) after the reset, "
                "then dials 1-2 s later, once FRR is back"
            ),
        )
    retry = inp.bgp.connect_retry
    return Bound(
        "recovery",
        high=max(0.0, first_dial + 2 * retry - d) + inp.tolerance,
        reason=(
            f"FRR was down {d:.1f} s, past the speakers' first dial (idle hold {GOBGP_IDLE_HOLD:g} s + "
            f"1-2 s); the next dial comes connect-retry .. 2 x connect-retry ({retry:g} s) later"
        ),
    )


def gateway_restart(inp: BoundInputs, restart_duration: float | None = None) -> ScenarioBounds:
    rec = gateway_restart_recovery(inp, restart_duration)
    assert rec.high is not None
    bounds = {
        "recovery": rec,
        "detect": Bound("detect", reason="informational: when the gateway FIB lost the VIP routes"),
    }
    for vip in ("traefik", "apiserver"):
        if restart_duration is None:
            bounds[f"loss_window:{vip}"] = Bound(f"loss_window:{vip}", reason="restart duration unknown")
        else:
            bounds[f"loss_window:{vip}"] = Bound(
                f"loss_window:{vip}",
                high=restart_duration + rec.high + inp.probe_timeout,
                reason=f"no route while FRR restarts ({restart_duration:.1f} s) and the sessions come back: "
                f"{rec.reason}",
            )
    return ScenarioBounds("gateway-restart", bounds)


def bounds_for(
    scenario: str, inp: BoundInputs, restart_duration: float | None = None, speaker_down_for: float | None = None
) -> ScenarioBounds:
    if scenario == "node-power-loss":
        return node_power_loss(inp)
    if scenario == "speaker-crash":
        return speaker_crash(inp, speaker_down_for)
    if scenario == "speaker-graceful-stop":
        return speaker_graceful_stop(inp)
    if scenario == "apiserver-down":
        return apiserver_down(inp)
    if scenario == "gateway-restart":
        return gateway_restart(inp, restart_duration)
    raise ValueError(f"unknown scenario {scenario!r}")


def fault_deadline(scenario: str, inp: BoundInputs, margin: float) -> float:
    """How long the runner holds a fault waiting for its effect before it gives up and undoes it."""
    b = bounds_for(scenario, inp).bounds
    high = b["detect"].high if "detect" in b else None
    return (high or 10.0) * margin + 5.0


def recovery_deadline(scenario: str, inp: BoundInputs, margin: float) -> float:
    high = bounds_for(scenario, inp).bounds["recovery"].high
    return (high or 30.0) * margin + 5.0


def inputs_from(
    design_bgp: BgpTimers,
    health: ProxyTimers | None,
    facts: GatewayFacts | None,
    node_ip: str | None,
    *,
    probe_interval: float,
    probe_timeout: float,
    sample_interval: float,
    node_count: int,
    speaker_version: str = GOBGP_VERSION,
    stop_sends_cease: bool = True,
) -> BoundInputs:
    """Rendered timers, overridden by what FRR reports it negotiated with ``node_ip`` (when known).

    Graceful restart counts as active only when FRR reports the capability both ways *and* a local mode that
    helps (``localGrMode`` not ``Disable``): with ``graceful-restart-disable`` FRR keeps no stale routes, even
    while the capability of the session's old OPEN still reads ``advertisedAndReceived``.
    """
    peer = facts.peers.get(node_ip) if facts is not None and node_ip else None
    if peer is None and facts is not None and facts.peers:
        peer = next(iter(facts.peers.values()))  # gateway-wide scenarios: any session shows the same timers
    return BoundInputs(
        bgp=design_bgp,
        health=health,
        gr_active=facts.gr_active(peer.ip) if facts is not None and peer is not None else design_bgp.gr_enabled,
        gateway_helper=facts.helper_for(peer.ip) if facts is not None and peer is not None else True,
        n_bit=(facts.n_bit_negotiated(peer.ip) if facts is not None and peer is not None else False),
        hold=(peer.hold_time if peer is not None and peer.hold_time else design_bgp.hold),
        keepalive=(peer.keepalive if peer is not None and peer.keepalive else design_bgp.keepalive),
        restart=(
            float(peer.received_restart_time)
            if peer is not None and peer.received_restart_time
            else design_bgp.restart_time
        ),
        probe_interval=probe_interval,
        probe_timeout=probe_timeout,
        sample_interval=sample_interval,
        node_count=node_count,
        frr_connect_retry=float(peer.connect_retry)
        if peer is not None and peer.connect_retry
        else FRR_DEFAULT_CONNECT_RETRY,
        speaker_version=_speaker_version(speaker_version),
        stop_sends_cease=stop_sends_cease,
    )
