"""Orchestrate one drill: verify, start the agents, baseline, inject, wait on conditions, undo, recover, analyse.

Everything that touches the lab goes through the :class:`~generators.drill.lab_api.Lab` interface;
the probe runs in ``client`` and the sampler in ``ucg``. Waiting is always a condition polled with a
deadline; deadlines come from the computed bounds times ``margin``. The fault is undone in
``finally`` (also on SIGINT/SIGTERM), and the lab must verify again before the run counts.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from generators.drill import analysis as an_mod
from generators.drill.analysis import Analysis, FaultTimes, Row
from generators.drill.bounds import (
    BoundInputs,
    ScenarioBounds,
    bounds_for,
    fault_deadline,
    inputs_from,
    recovery_deadline,
)
from generators.drill.design import Design, load_design
from generators.drill.gateway import GatewayFacts, read_gateway_facts
from generators.drill.lab_api import Lab
from generators.drill.samples import ControlRun, ProbeRun, parse_control, parse_probe
from generators.drill.scenarios import SCENARIOS, FaultLedger, Scenario
from generators.errors import LabToolError
from generators.in_container import DIR as AGENT_DIR
from generators.readback import frrstate
from generators.versions import GOBGP_VERSION

LAB_WORKDIR = "/tmp/drill"
PYTHON = "python3"


class DrillError(LabToolError):
    """The drill could not run (lab not verified, agent did not start, ...); the message says what to do."""


class DrillInterrupted(KeyboardInterrupt):
    """SIGTERM/SIGINT during a drill; raised after the fault has been undone."""


@dataclass
class DrillOptions:
    rate: float = 10.0  # new connections per second per VIP
    timeout: float = 1.0  # probe attempt timeout, seconds
    sample_interval: float = 0.2
    margin: float = 1.5  # deadlines = bound x margin + 5 s
    baseline_timeout: float = 60.0
    tail: float = 3.0  # keep probing this long after recovery
    verify_timeout: float = 120.0
    poll: float = 0.25
    speaker_version: str = GOBGP_VERSION  # GoBGP the twin's speakers run (Cilium 1.19 builds on 3.37)
    # speaker scenarios: restart the speaker this many seconds after the fault (an agent that comes
    # back), instead of once the node has left the gateway's FIB (the whole stale window)
    restart_delay: float | None = None


@dataclass
class RunResult:
    scenario: str
    node: str | None
    index: int
    run_id: str
    fault: FaultTimes | None
    inputs: BoundInputs | None
    gateway: GatewayFacts | None
    bounds: ScenarioBounds | None
    analysis: Analysis | None
    rows: list[Row]
    probe: ProbeRun | None
    control: ControlRun | None
    verified_after: bool
    events: list[tuple[float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def outside(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "outside"]

    @property
    def ok(self) -> bool:
        return self.verified_after and not self.outside and not self.errors


@dataclass
class DrillResult:
    lab: str
    fidelity: str = "twin"  # whose decisions the lab ran: "twin" (our Python) or "cilium" (Cilium's own code)
    runs: list[RunResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.ok for r in self.runs)


@dataclass
class _Ctx:
    lab: Lab
    opts: DrillOptions
    clock: Callable[[], float]
    pause: Callable[[float], None]
    say: Callable[[str], None]
    events: list[tuple[float, str]] = field(default_factory=list)

    def event(self, what: str) -> None:
        self.events.append((self.clock(), what))
        self.say(what)

    def wait_until(self, cond: Callable[[], bool], timeout: float, what: str) -> bool:
        """Poll ``cond`` every ``poll`` seconds until it holds or ``timeout`` passes."""
        deadline = self.clock() + timeout
        while True:
            if cond():
                return True
            if self.clock() >= deadline:
                self.say(f"gave up waiting for {what} after {timeout:.1f} s")
                return False
            self.pause(self.opts.poll)


# ---------------------------------------------------------------- agents in the lab


@dataclass(frozen=True)
class AgentPaths:
    run_dir: str

    @property
    def probe_out(self) -> str:
        return f"{self.run_dir}/probe.jsonl"

    @property
    def probe_status(self) -> str:
        return f"{self.run_dir}/probe-status.json"

    @property
    def control_out(self) -> str:
        return f"{self.run_dir}/control.jsonl"

    @property
    def control_latest(self) -> str:
        return f"{self.run_dir}/control-latest.json"

    @property
    def stop(self) -> str:
        return f"{self.run_dir}/stop"

    @property
    def probe_script(self) -> str:
        return f"{self.run_dir}/probe_agent.py"

    @property
    def sampler_script(self) -> str:
        return f"{self.run_dir}/sampler_agent.py"


def probe_argv(lab: Lab, paths: AgentPaths, opts: DrillOptions, max_duration: float) -> list[str]:
    argv = [
        PYTHON,
        paths.probe_script,
        "--out",
        paths.probe_out,
        "--status",
        paths.probe_status,
        "--stop-file",
        paths.stop,
        "--rate",
        str(opts.rate),
        "--timeout",
        str(opts.timeout),
        "--max-duration",
        f"{max_duration:.0f}",
    ]
    if "apiserver" in lab.vips:
        argv += [
            "--apiserver-vip",
            lab.vips["apiserver"],
            "--apiserver-port",
            str(lab.apiserver_port),
            "--dns-name",
            lab.dns_name,
            "--ca",
            lab.ca_path_in_client,
        ]
    if "traefik" in lab.vips:
        argv += ["--traefik-vip", lab.vips["traefik"]]
    return argv


def sampler_argv(lab: Lab, paths: AgentPaths, opts: DrillOptions, max_duration: float) -> list[str]:
    argv = [
        PYTHON,
        paths.sampler_script,
        "--out",
        paths.control_out,
        "--latest",
        paths.control_latest,
        "--stop-file",
        paths.stop,
        "--interval",
        str(opts.sample_interval),
        "--max-duration",
        f"{max_duration:.0f}",
    ]
    for role, ip in sorted(lab.vips.items()):
        argv += ["--vip", f"{role}={ip}"]
    return argv


def _read_json(ctx: _Ctx, node: str, path: str) -> dict | None:
    res = ctx.lab.exec(node, ["cat", path], timeout=10)
    if res.exit_code != 0 or not res.stdout.strip():
        return None
    try:
        return json.loads(res.stdout)
    except json.JSONDecodeError:
        return None  # being replaced right now; the next poll reads it


def _read_text(ctx: _Ctx, node: str, path: str) -> str:
    res = ctx.lab.exec(node, ["cat", path], timeout=60)
    if res.exit_code != 0:
        raise DrillError(f"could not read {path} in {node}: {res.stderr.strip()[:200]}")
    return res.stdout


def start_agents(ctx: _Ctx, paths: AgentPaths, max_duration: float) -> None:
    lab = ctx.lab
    for node in ("client", "ucg"):
        res = lab.exec(node, ["mkdir", "-p", paths.run_dir])
        if res.exit_code != 0:
            raise DrillError(f"mkdir {paths.run_dir} in {node} failed: {res.stderr.strip()[:200]}")
    common = (AGENT_DIR / "agent_common.py").read_bytes()
    for node, script, source in (
        ("client", paths.probe_script, "probe_agent.py"),
        ("ucg", paths.sampler_script, "sampler_agent.py"),
    ):
        lab.put_file(node, f"{paths.run_dir}/agent_common.py", common, 0o644)
        lab.put_file(node, script, (AGENT_DIR / source).read_bytes(), 0o755)
    lab.put_file("ucg", f"{paths.run_dir}/frrstate.py", Path(frrstate.__file__).read_bytes(), 0o644)
    lab.exec_background("ucg", sampler_argv(lab, paths, ctx.opts, max_duration))
    lab.exec_background("client", probe_argv(lab, paths, ctx.opts, max_duration))
    ctx.event("probe and sampler started")


def stop_agents(ctx: _Ctx, paths: AgentPaths) -> None:
    for node in ("client", "ucg"):
        ctx.lab.exec(node, ["touch", paths.stop])


def agents_ended(ctx: _Ctx, paths: AgentPaths) -> bool:
    status = _read_json(ctx, "client", paths.probe_status) or {}
    tail = ctx.lab.exec("ucg", ["tail", "-n", "1", paths.control_out])
    return bool(status.get("done")) and '"type": "end"' in tail.stdout


# ---------------------------------------------------------------- conditions


def probe_nodes_seen(status: dict, vip: str, since: float) -> set[str]:
    return {n for n, t in ((status.get("last_ok_by_node") or {}).get(vip) or {}).items() if t >= since}


def fib_sets(sample: dict | None) -> dict[str, set[str]]:
    if not sample:
        return {}
    return {role: set(v.get("fib") or []) for role, v in (sample.get("vips") or {}).items()}


def baseline_ready(status: dict | None, sample: dict | None, lab: Lab, since: float, min_baseline: float = 2.0) -> bool:
    """Every node answered every VIP since ``since``, for at least ``min_baseline`` s, and every VIP is in the FIB."""
    if not status or not sample or status.get("t", 0.0) - since < min_baseline:
        return False
    nodes = set(lab.nodes)
    for vip in lab.vips:
        if not nodes <= probe_nodes_seen(status, vip, since):
            return False
    fibs = fib_sets(sample)
    return all(fibs.get(role) for role in lab.vips)


def node_out_of_fib(sample: dict | None, node_ip: str) -> bool:
    fibs = fib_sets(sample)
    return bool(fibs) and all(node_ip not in nh for nh in fibs.values())


def apiserver_quiet(status: dict | None, inject_start: float, now: float, quiet: float) -> bool:
    """No apiserver failure for ``quiet`` seconds (and at least ``quiet`` seconds since the fault)."""
    if not status or now - inject_start < quiet:
        return False
    last_fail = (status.get("last_failure") or {}).get("apiserver", 0.0)
    return status.get("t", 0.0) - max(last_fail, inject_start) >= quiet


# ---------------------------------------------------------------- one run


def _inputs(lab: Lab, design: Design, facts: GatewayFacts | None, node: str | None, opts: DrillOptions) -> BoundInputs:
    return inputs_from(
        design.bgp,
        design.health,
        facts,
        lab.nodes.get(node) if node else None,
        probe_interval=1.0 / opts.rate,
        probe_timeout=opts.timeout,
        sample_interval=opts.sample_interval,
        node_count=len(lab.nodes),
        speaker_version=opts.speaker_version,
        stop_sends_cease=lab.graceful_stop_sends_cease,
    )


def _hold_fault(
    ctx: _Ctx, scenario: Scenario, node_ip: str | None, paths: AgentPaths, inject_start: float, timeout: float
) -> bool:
    if scenario.name.startswith("speaker-") and ctx.opts.restart_delay is not None:
        delay = ctx.opts.restart_delay  # the scenario's own parameter: how long the speaker stays down
        return ctx.wait_until(lambda: ctx.clock() - inject_start >= delay, delay + 5, f"the {delay:g} s restart delay")
    if scenario.wait_for == "fib-gone":
        assert node_ip is not None
        return ctx.wait_until(
            lambda: node_out_of_fib(_read_json(ctx, "ucg", paths.control_latest), node_ip),
            timeout,
            f"{node_ip} to leave the gateway FIB",
        )
    if scenario.wait_for == "apiserver-out":
        quiet = max(2.0, 3 * ctx.opts.timeout)
        return ctx.wait_until(
            lambda: apiserver_quiet(_read_json(ctx, "client", paths.probe_status), inject_start, ctx.clock(), quiet),
            timeout,
            "apiserver attempts to stop failing",
        )
    return True


def _recovered(
    ctx: _Ctx, scenario: Scenario, node: str | None, paths: AgentPaths, baseline_fib: dict[str, set[str]], since: float
) -> bool:
    status = _read_json(ctx, "client", paths.probe_status) or {}
    if scenario.name == "apiserver-down":
        return node in probe_nodes_seen(status, "apiserver", since)
    if fib_sets(_read_json(ctx, "ucg", paths.control_latest)) != baseline_fib:
        return False
    return node is None or node in probe_nodes_seen(status, "traefik", since)


def run_once(
    lab: Lab,
    scenario: Scenario,
    node: str | None,
    index: int,
    opts: DrillOptions,
    design: Design,
    clock: Callable[[], float] = time.time,
    pause: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = print,
) -> RunResult:
    ctx = _Ctx(lab, opts, clock, pause, say)
    run_id = f"{scenario.name}-{node or 'gw'}-{index}-{uuid.uuid4().hex[:6]}"
    paths = AgentPaths(f"{LAB_WORKDIR}/{run_id}")
    result = RunResult(
        scenario.name, node, index, run_id, None, None, None, None, None, [], None, None, False, events=ctx.events
    )
    if not lab.verify():
        failing = "; ".join(getattr(lab, "last_verify_failures", ()) or ())
        raise DrillError(
            "the lab does not verify before the drill; run `invoke verify` and fix what it reports"
            + (f" ({failing})" if failing else "")
        )
    facts = read_gateway_facts(lab)
    result.gateway = facts
    inp = _inputs(lab, design, facts, node, opts)
    result.inputs = inp
    node_ip = lab.nodes.get(node) if node else None
    hold_timeout = fault_deadline(scenario.name, inp, opts.margin)
    rec_timeout = recovery_deadline(scenario.name, inp, opts.margin)
    max_duration = opts.baseline_timeout + hold_timeout + rec_timeout + opts.tail + 60
    ledger = FaultLedger(lab, clock)
    fault: FaultTimes | None = None
    started = False
    try:
        start_agents(ctx, paths, max_duration)
        started = True
        t_agents = clock()
        if not ctx.wait_until(
            lambda: baseline_ready(
                _read_json(ctx, "client", paths.probe_status),
                _read_json(ctx, "ucg", paths.control_latest),
                lab,
                t_agents,
            ),
            opts.baseline_timeout,
            "a baseline in which every node answered",
        ):
            raise DrillError(
                "no clean baseline: not every node answered both VIPs, or the gateway FIB lacks a VIP; "
                "check `invoke verify` and the probe output"
            )
        baseline_fib = fib_sets(_read_json(ctx, "ucg", paths.control_latest))
        ctx.event(f"baseline: FIB { ({k: sorted(v) for k, v in baseline_fib.items()}) }")
        inject_start, inject_end = ledger.inject(scenario, node)
        ctx.event(f"fault injected: {scenario.name} {node or ''}".strip())
        if not _hold_fault(ctx, scenario, node_ip, paths, inject_start, hold_timeout):
            result.errors.append(f"{scenario.name}: the expected effect did not happen within {hold_timeout:.0f} s")
        if node is not None:  # keep the fault until every other node was seen serving under it
            t_effect = clock()
            others = set(lab.nodes) - {node}
            ctx.wait_until(
                lambda: all(
                    others <= probe_nodes_seen(_read_json(ctx, "client", paths.probe_status) or {}, vip, t_effect)
                    for vip in lab.vips
                ),
                10.0,
                "the other nodes to answer during the fault",
            )
        undo = ledger.undo_last()
        if undo is not None:
            ctx.event("fault undone")
        fault = FaultTimes(inject_start, inject_end, *(undo or (None, None)))
        if not ctx.wait_until(
            lambda: _recovered(ctx, scenario, node, paths, baseline_fib, fault.end),
            rec_timeout,
            "recovery to the baseline",
        ):
            result.errors.append(f"{scenario.name}: no recovery within {rec_timeout:.0f} s after the fault ended")
        t_rec = clock()
        ctx.wait_until(
            lambda: (_read_json(ctx, "client", paths.probe_status) or {}).get("t", 0.0) >= t_rec + opts.tail,
            opts.tail + 10,
            "the tail of probe samples",
        )
    finally:
        errors = ledger.undo_all()
        result.errors.extend(errors)
        if started:
            stop_agents(ctx, paths)
            ctx.wait_until(lambda: agents_ended(ctx, paths), max(10.0, 3 * opts.timeout), "the agents to stop")
    result.fault = fault
    result.probe = parse_probe(_read_text(ctx, "client", paths.probe_out))
    result.control = parse_control(_read_text(ctx, "ucg", paths.control_out))
    if fault is not None:
        restart_duration = fault.inject_end - fault.inject_start if scenario.undo is None else None
        result.bounds = bounds_for(scenario.name, inp, restart_duration, speaker_down_for=opts.restart_delay)
        result.analysis = an_mod.analyse(scenario.name, result.probe, result.control, fault, node, node_ip)
        result.rows = an_mod.verdict_rows(result.analysis, result.bounds)
    result.verified_after = ctx.wait_until(lab.verify, opts.verify_timeout, "`verify` to pass after the drill")
    ctx.event("lab verifies again" if result.verified_after else "LAB DOES NOT VERIFY after the drill")
    return result


@contextmanager
def _signals_raise() -> Iterator[None]:
    """Turn SIGTERM into an exception (SIGINT already is one) so ``finally`` undoes the fault."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        raise DrillInterrupted(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def default_node(lab: Lab) -> str:
    if not lab.nodes:
        raise DrillError("the lab has no cluster nodes")
    return sorted(lab.nodes)[0]


def run_drill(
    lab: Lab,
    scenario: str | Scenario,
    node: str | None = None,
    repeat: int = 1,
    rate: float = 10.0,
    options: DrillOptions | None = None,
    design: Design | None = None,
    clock: Callable[[], float] = time.time,
    pause: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = print,
) -> DrillResult:
    """Run ``scenario`` ``repeat`` times against ``node`` (default: the first cluster node)."""
    sc = SCENARIOS[scenario] if isinstance(scenario, str) else scenario
    opts = options or DrillOptions()
    opts.rate = rate
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    target = (node or default_node(lab)) if sc.per_node else None
    if target is not None and target not in lab.nodes:
        raise DrillError(f"--node {target}: not a cluster node of lab {lab.name} ({', '.join(sorted(lab.nodes))})")
    design = design or load_design(lab.rendered_dir)
    out = DrillResult(lab=lab.name, fidelity=lab.fidelity)
    with _signals_raise():
        for i in range(repeat):
            say(f"== {sc.name} {target or ''} run {i + 1}/{repeat}")
            out.runs.append(run_once(lab, sc, target, i, opts, design, clock, pause, say))
    return out
