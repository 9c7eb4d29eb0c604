"""Turn probe attempts and control-plane samples into the drill's measures (pure, no I/O).

Resolution: a probe time is known to within one probe interval (``1 / rate``), a control-plane
time to within the gap to the previous sample; both are carried with every measurement.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from generators.drill.bounds import ScenarioBounds
from generators.drill.samples import Attempt, ControlRun, ControlSample, ProbeRun

ROUTE_SCENARIOS = ("node-power-loss", "speaker-crash", "speaker-graceful-stop", "gateway-restart")
# scenarios in which a node's apiserver is out and comes back: its loss window ends when it is back
RETURNING_APISERVER = ("apiserver-down", "node-power-loss")


@dataclass(frozen=True)
class FaultTimes:
    inject_start: float
    inject_end: float
    undo_start: float | None = None
    undo_end: float | None = None

    @property
    def end(self) -> float:
        """When the fault was over: the undo returned (or the injection, for one-shot faults)."""
        return self.undo_end if self.undo_end is not None else self.inject_end

    @property
    def held_until(self) -> float:
        return self.undo_start if self.undo_start is not None else self.inject_end


@dataclass(frozen=True)
class Measurement:
    measure: str
    value: float | int | bool | None
    resolution: float | None = None
    detail: str = ""
    censored: bool = False  # the event had not happened when observation stopped: the true value is > value

    def to_json(self) -> dict:
        return {"measure": self.measure, "value": self.value, "resolution": self.resolution, "detail": self.detail,
                "censored": self.censored}


@dataclass(frozen=True)
class LossStats:
    vip: str
    attempts: int
    failed: int
    first_fail: float | None
    last_fail: float | None
    bursts: tuple[tuple[float, float, int], ...]  # (first start, last start, failed attempts)
    kinds: dict[str, int]
    in_window: int = 0  # attempts started between the first and the last failed one


    @property
    def window(self) -> float:
        if self.first_fail is None or self.last_fail is None:
            return 0.0
        return self.last_fail - self.first_fail

    @property
    def share(self) -> float:
        """Failed share of the attempts started inside the loss window."""
        return self.failed / self.in_window if self.in_window else 0.0

    @property
    def share_observed(self) -> float:
        """Failed share of every attempt from the fault start to the end of the observation."""
        return self.failed / self.attempts if self.attempts else 0.0

    @property
    def longest_burst(self) -> float:
        return max((b - a for a, b, _ in self.bursts), default=0.0)

    def to_json(self) -> dict:
        return {"vip": self.vip, "attempts": self.attempts, "failed": self.failed, "share": self.share,
                "in_window": self.in_window, "share_observed": self.share_observed,
                "first_fail": self.first_fail, "last_fail": self.last_fail, "window": self.window,
                "longest_burst": self.longest_burst, "bursts": [list(b) for b in self.bursts], "kinds": self.kinds}


@dataclass
class Analysis:
    scenario: str
    node: str | None
    probe_interval: float
    sample_interval: float
    measurements: dict[str, Measurement] = field(default_factory=dict)
    loss: dict[str, LossStats] = field(default_factory=dict)
    baseline_fib: dict[str, list[str]] = field(default_factory=dict)
    baseline_failures: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, m: Measurement) -> None:
        self.measurements[m.measure] = m

    def to_json(self) -> dict:
        return {"scenario": self.scenario, "node": self.node, "probe_interval": self.probe_interval,
                "sample_interval": self.sample_interval,
                "measurements": {k: m.to_json() for k, m in self.measurements.items()},
                "loss": {k: v.to_json() for k, v in self.loss.items()}, "baseline_fib": self.baseline_fib,
                "baseline_failures": self.baseline_failures, "notes": self.notes}


@dataclass(frozen=True)
class Row:
    scenario: str
    measure: str
    expected: str
    measured: str
    verdict: str  # inside | outside | not measured | no bound | info
    reason: str

    def to_json(self) -> dict:
        return dict(self.__dict__)


# ---------------------------------------------------------------- probe side

def loss_stats(attempts: list[Attempt], vip: str, start: float, end: float) -> LossStats:
    """Failures of ``vip`` among attempts that started in [start, end]."""
    chosen = sorted((a for a in attempts if a.vip == vip and start <= a.t_start <= end), key=lambda a: a.k)
    failed = [a for a in chosen if not a.ok]
    bursts: list[tuple[float, float, int]] = []
    run: list[Attempt] = []
    for a in [*chosen, None]:
        if a is not None and not a.ok:
            run.append(a)
            continue
        if run:
            bursts.append((run[0].t_start, run[-1].t_start, len(run)))
            run = []
    kinds: dict[str, int] = {}
    for a in failed:
        kinds[a.outcome] = kinds.get(a.outcome, 0) + 1
    first = failed[0].t_start if failed else None
    last = failed[-1].t_start if failed else None
    in_window = sum(1 for a in chosen if first is not None and last is not None and first <= a.t_start <= last)
    return LossStats(vip=vip, attempts=len(chosen), failed=len(failed), first_fail=first, last_fail=last,
                     bursts=tuple(bursts), kinds=kinds, in_window=in_window)


def served_nodes(attempts: list[Attempt], vip: str, start: float, end: float) -> set[str]:
    """Nodes that answered ``vip`` in attempts started in [start, end)."""
    return {a.node for a in attempts if a.vip == vip and a.ok and a.node and start <= a.t_start < end}


def first_ok_from(attempts: list[Attempt], vip: str, node: str, after: float) -> float | None:
    return min((a.t_start for a in attempts if a.vip == vip and a.ok and a.node == node and a.t_start >= after),
               default=None)


def last_failure(attempts: list[Attempt], vip: str, start: float, end: float) -> float | None:
    return max((a.t_start for a in attempts if a.vip == vip and not a.ok and start <= a.t_start <= end), default=None)


# ---------------------------------------------------------------- control-plane side

def baseline_sample(samples: list[ControlSample], before: float) -> ControlSample | None:
    prior = [s for s in samples if s.t < before]
    return prior[-1] if prior else None


def first_sample(samples: list[ControlSample], after: float, pred) -> tuple[float, float] | None:
    """(time, resolution) of the first sample at or after ``after`` that satisfies ``pred``."""
    prev_t = None
    for s in samples:
        if s.t < after:
            prev_t = s.t
            continue
        if pred(s):
            resolution = s.t - prev_t if prev_t is not None else 0.0
            return s.t, resolution
        prev_t = s.t
    return None


def vips_with(sample: ControlSample, ip: str) -> list[str]:
    return [role for role, v in sample.vips.items() if ip in v.fib_nexthops]


def nexthop_counts(samples: list[ControlSample], role: str) -> list[tuple[float, float, int, int]]:
    """(t, BGP next-hops (NaN when FRR did not answer), FIB next-hops, stale paths) of one VIP, for the plot."""
    out = []
    for s in samples:
        v = s.vips.get(role)
        if v is not None:
            bgp = float(len(v.bgp_nexthops)) if v.frr else float("nan")
            out.append((s.t, bgp, len(v.fib_nexthops), len(v.stale_nexthops)))
    return out


# ---------------------------------------------------------------- per scenario

def _route_measures(an: Analysis, control: ControlRun, fault: FaultTimes, node_ip: str | None,
                    baseline: ControlSample) -> None:
    samples = control.samples
    base_fib = {role: v.fib_nexthops for role, v in baseline.vips.items()}
    if node_ip is not None:
        roles = vips_with(baseline, node_ip)
        if not roles:
            an.notes.append(f"{node_ip} was not a FIB next-hop of any VIP before the fault")
        gone = first_sample(samples, fault.inject_start,
                            lambda s: all(node_ip not in s.vips[r].fib_nexthops for r in roles if r in s.vips))
        stale = first_sample(samples, fault.inject_start,
                             lambda s: s.frr_ok and any(node_ip in v.stale_nexthops for v in s.vips.values()))
        bgp_gone = first_sample(samples, fault.inject_start, lambda s: s.frr_ok and all(
            node_ip not in s.vips[r].bgp_nexthops for r in roles if r in s.vips))
        if gone is not None and gone[0] <= fault.held_until + control.interval:
            an.add(Measurement("detect", gone[0] - fault.inject_start, gone[1], "next-hop left the FIB"))
        else:  # still a next-hop when the fault was undone: detection took longer than the fault lasted
            an.add(Measurement("detect", fault.held_until - fault.inject_start, control.interval,
                               "next-hop still in the FIB when the fault was undone", censored=True))
        an.add(Measurement("stale", None if stale is None else stale[0] - fault.inject_start,
                           None if stale is None else stale[1],
                           "FRR marked the node's paths stale" if stale else "no stale path seen"))
        if bgp_gone is not None:
            an.notes.append(f"next-hop left BGP after {bgp_gone[0] - fault.inject_start:.2f} s")
        if stale is not None and gone is not None:
            an.notes.append(f"stale paths kept for {gone[0] - stale[0]:.2f} s")
    else:
        empty = first_sample(samples, fault.inject_start, lambda s: all(not v.fib_nexthops for v in s.vips.values()))
        an.add(Measurement("detect", None if empty is None else empty[0] - fault.inject_start,
                           None if empty is None else empty[1],
                           "VIP routes left the gateway FIB" if empty else "VIP routes stayed in the FIB"))
    back = first_sample(samples, fault.end,
                        lambda s: all(s.vips.get(r) is not None and s.vips[r].fib_nexthops == nh
                                      for r, nh in base_fib.items()))
    if back is not None:
        an.add(Measurement("recovery", back[0] - fault.end, back[1], "FIB next-hops back to the baseline"))
    elif samples and samples[-1].t > fault.end:
        an.add(Measurement("recovery", samples[-1].t - fault.end, control.interval,
                           "FIB not back to the baseline when sampling stopped", censored=True))


def _apiserver_measures(an: Analysis, probe: ProbeRun, fault: FaultTimes, node: str) -> None:
    last = last_failure(probe.attempts, "apiserver", fault.inject_start, fault.held_until)
    an.add(Measurement("detect", 0.0 if last is None else last - fault.inject_start, probe.interval,
                       "last failed apiserver attempt while the apiserver was down" if last is not None
                       else "no apiserver attempt failed"))
    back = first_ok_from(probe.attempts, "apiserver", node, fault.end)
    last = max((a.t_start for a in probe.attempts), default=fault.end)
    if back is not None:
        an.add(Measurement("recovery", back - fault.end, probe.interval, f"first apiserver answer from {node}"))
    elif last > fault.end:
        an.add(Measurement("recovery", last - fault.end, probe.interval,
                           f"{node} had not answered again when probing stopped", censored=True))


def analyse(scenario: str, probe: ProbeRun, control: ControlRun, fault: FaultTimes, node: str | None,
            node_ip: str | None) -> Analysis:
    an = Analysis(scenario=scenario, node=node, probe_interval=probe.interval, sample_interval=control.interval)
    vips = sorted({a.vip for a in probe.attempts})
    pre = [a for a in probe.attempts if a.t_start < fault.inject_start]
    an.baseline_failures = {v: sum(1 for a in pre if a.vip == v and not a.ok) for v in vips}
    for v, n in an.baseline_failures.items():
        if n:
            an.notes.append(f"{n} {v} attempts failed before the fault (baseline not clean)")
    baseline = baseline_sample(control.samples, fault.inject_start)
    if baseline is not None:
        an.baseline_fib = {r: sorted(v.fib_nexthops) for r, v in baseline.vips.items()}
    if scenario in ROUTE_SCENARIOS:
        if baseline is None:
            an.notes.append("no control-plane sample before the fault: no baseline")
        else:
            _route_measures(an, control, fault, node_ip if scenario != "gateway-restart" else None, baseline)
    elif scenario == "apiserver-down":
        assert node is not None
        _apiserver_measures(an, probe, fault, node)
    rec = an.measurements.get("recovery")
    obs_end = (fault.end + rec.value) if rec is not None and isinstance(rec.value, float) else \
        max((a.t_start for a in probe.attempts), default=fault.end)
    for v in vips:
        end = obs_end
        if scenario in RETURNING_APISERVER and v == "apiserver":
            # the dead backend's window ends when it is back (started again, or its node reachable again);
            # what the returning apiserver costs (it gets traffic as soon as its port accepts, before it
            # serves) is reported on its own
            end = fault.undo_start if fault.undo_start is not None else fault.inject_end
            after = loss_stats(probe.attempts, v, end, obs_end)
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(after.kinds.items())) or "none"
            an.add(Measurement(f"failed_after_undo:{v}", after.failed, None, f"outcomes: {kinds}"))
        stats = loss_stats(probe.attempts, v, fault.inject_start, end)
        an.loss[v] = stats
        an.add(Measurement(f"loss_window:{v}", stats.window, probe.interval,
                           f"{stats.failed} of {stats.in_window} failed ({stats.share:.0%})"))
        an.add(Measurement(f"longest_burst:{v}", stats.longest_burst, probe.interval,
                           f"{len(stats.bursts)} burst(s)"))
        an.add(Measurement(f"failed:{v}", stats.failed, None, f"of {stats.attempts} attempts"))
    if node is not None and not vips:
        an.add(Measurement("others_served", None, None, "no probe samples"))
    elif node is not None:
        missing = []
        for v in vips:
            before = served_nodes(probe.attempts, v, fault.inject_start - 30.0, fault.inject_start) - {node}
            during = served_nodes(probe.attempts, v, fault.inject_end, fault.held_until)
            missing += [f"{v}:{n}" for n in sorted(before - during)]
        an.add(Measurement("others_served", not missing, None,
                           "every other node answered" if not missing else "silent: " + ", ".join(missing)))
    return an


def _fmt(m: Measurement | None) -> str:
    if m is None or m.value is None:
        return "-"
    if isinstance(m.value, bool):
        return "yes" if m.value else "no"
    if isinstance(m.value, int):
        return f"{m.value} ({m.detail})" if m.detail else str(m.value)
    res = f" ±{m.resolution:.2f}" if m.resolution else ""
    extra = f" [{m.detail}]" if m.measure.startswith("loss_window") else ""
    if m.censored:
        return f"> {m.value:.2f} s [{m.detail}]"
    return f"{m.value:.2f} s{res}{extra}"


def verdict_rows(an: Analysis, bounds: ScenarioBounds) -> list[Row]:
    rows = []
    for measure, bound in bounds.bounds.items():
        m = an.measurements.get(measure)
        verdict = bound.check(None if m is None else m.value)
        if m is not None and m.censored and verdict == "inside" and bound.high is not None:
            verdict = "not measured"  # a lower bound inside the bound says nothing
        if verdict == "no bound" and bound.reason.startswith("informational"):
            verdict = "info"
        rows.append(Row(an.scenario, measure, bound.describe(), _fmt(m), verdict, bound.reason))
    for measure in ("loss_window:traefik", "loss_window:apiserver"):
        if measure in an.measurements and measure not in bounds.bounds:
            rows.append(Row(an.scenario, measure, "-", _fmt(an.measurements[measure]), "info", "reported, not bounded"))
    after = an.measurements.get("failed_after_undo:apiserver")
    if after is not None and after.value:
        rows.append(Row(an.scenario, after.measure, "-", f"{after.value} ({after.detail})", "info",
                        "attempts that failed after the node's apiserver was back: a TCP health check marks it "
                        "healthy as soon as its port accepts, before it serves (a real kube-apiserver answers 403 "
                        "and 500 until its RBAC cache and post-start hooks are ready, and 500 on /healthz until "
                        "its etcd member answers again after a partition)"))
    return rows
