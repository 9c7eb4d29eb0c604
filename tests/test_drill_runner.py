"""The runner's orchestration against SimulatedLabDouble: a TEST DOUBLE of a lab on a simulated clock.

The double models only timings (when a next-hop leaves the FIB, when a backend is marked down,
...) on top of tests/fixtures/drill/synth.py and writes agent output in the agents' formats. It
checks the runner's order of operations, its waiting on conditions and deadlines, undo on
interruption, and the verdicts -- it measures nothing real.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from generators.drill import main, run_drill
from generators.drill.runner import DrillError, DrillOptions
from generators.in_container import probe_agent, sampler_agent

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "drill"))
from synth import INF, SEED_NODES, SEED_VIPS, SynthWorld, control_lines, probe_lines  # noqa: E402
from test_drill_bounds import rendered_dir  # noqa: E402

DRILL = Path(__file__).parent / "fixtures" / "drill"


@dataclass
class Exec:
    exit_code: int
    stdout: str
    stderr: str = ""


class SimClock:
    def __init__(self, start: float = 1_000.0):
        self.now = start
        self.interrupt_after: float | None = None  # raise KeyboardInterrupt once now passes this

    def time(self) -> float:
        return self.now

    def pause(self, dt: float) -> None:
        self.now += dt
        if self.interrupt_after is not None and self.now >= self.interrupt_after:
            self.interrupt_after = None
            raise KeyboardInterrupt("simulated Ctrl-C")


class SimulatedLabDouble:
    """TEST DOUBLE of generators.drill.lab_api.Lab (timings only, simulated clock)."""

    name = "double"
    fidelity = "twin"
    graceful_stop_sends_cease = True
    apiserver_port = 6443
    dns_name = "kube.lab.test"
    ca_path_in_client = "/etc/lab/ca.pem"

    def __init__(self, clock: SimClock, rendered: Path, facts_file: str, *, detect_delay: float = 3.0,
                 restart: float = 10.0, verifies: bool = True):
        self.clock = clock
        self.rendered_dir = rendered
        self.nodes = dict(SEED_NODES)
        self.vips = dict(SEED_VIPS)
        self.world = SynthWorld(self.nodes, self.vips)
        self.facts = (DRILL / facts_file).read_text()
        self.detect_delay, self.restart, self.verifies = detect_delay, restart, verifies
        self.files: dict[tuple[str, str], bytes] = {}
        self.calls: list[str] = []
        self.probe = self.sampler = None  # parsed agent arguments + start time
        self.stopped_at: dict[str, float] = {}  # first stop per container (for assertions)
        self.stop_files: dict[tuple[str, str], float] = {}
        self.open: dict[tuple[str, str], list[float]] = {}

    # -- plumbing
    def exec(self, node, argv, timeout=30):
        cmd = argv[0]
        if cmd == "mkdir":
            return Exec(0, "")
        if cmd == "touch":
            self.stopped_at.setdefault(node, self.clock.now)
            self.stop_files.setdefault((node, argv[1]), self.clock.now)
            return Exec(0, "")
        if cmd in ("cat", "tail"):
            text = self._file(node, argv[-1])
            if text is None:
                return Exec(1, "", f"cat: {argv[-1]}: No such file or directory")
            return Exec(0, text if cmd == "cat" else (text.splitlines() or [""])[-1] + "\n")
        if cmd == "vtysh":
            what = argv[2]
            return Exec(0, {"show bgp neighbors json": self.facts, "show version": "FRRouting 8.4.4 (ucg).\n",
                            "show running-config": "router bgp 64512\n"}[what])
        raise AssertionError(f"unexpected exec {node} {argv}")

    def exec_background(self, node, argv):
        assert argv[0] == "python3" and self.files.get((node, argv[1])), "agent script must be put first"
        if node == "client":
            self.probe = (probe_agent.parse_args(argv[2:]), self.clock.now)
        else:
            self.sampler = (sampler_agent.parse_args(argv[2:]), self.clock.now)
        self.calls.append(f"start {node}")

    def put_file(self, node, path, data, mode=0o755):
        self.files[(node, path)] = data

    def _agent_until(self, node: str, args, start: float) -> tuple[float, bool]:
        stop = self.stop_files.get((node, args.stop_file), INF)
        max_duration = args.max_duration
        until = min(self.clock.now, stop, start + max_duration)
        return until, self.clock.now >= stop

    def _file(self, node: str, path: str) -> str | None:
        if node == "client" and self.probe:
            args, t0 = self.probe
            until, done = self._agent_until(node, args, t0)
            lines = probe_lines(self.world, t0, args.rate, until, args.timeout)
            if path == args.out:
                return "\n".join(lines + ([json.dumps({"type": "end", "reason": "stop-file"})] if done else [])) + "\n"
            if path == args.status:
                return json.dumps(self._status(lines, done))
        if node == "ucg" and self.sampler:
            args, t0 = self.sampler
            until, done = self._agent_until(node, args, t0)
            lines = control_lines(self.world, t0, args.interval, until)
            if path == args.out:
                return "\n".join(lines + ([json.dumps({"type": "end"})] if done else [])) + "\n"
            if path == args.latest:
                return lines[-1] if len(lines) > 1 else None
        return None

    def _status(self, lines: list[str], done: bool) -> dict:
        last_ok: dict[str, dict[str, float]] = {}
        last_fail: dict[str, float] = {}
        for rec in map(json.loads, lines[1:]):
            if rec["outcome"] == "ok":
                last_ok.setdefault(rec["vip"], {})[rec["node"]] = rec["t_start"]
            else:
                last_fail[rec["vip"]] = rec["t_start"]
        return {"t": self.clock.now, "done": done, "last_ok_by_node": last_ok, "last_failure": last_fail}

    # -- faults (timings of a gateway WITHOUT the N-bit unless told otherwise)
    def _span(self, what, node, start, end=INF):
        self.open[(what, node)] = self.world.add(what, node, start, end)

    def _close(self, what, node, end):
        span = self.open.pop((what, node), None)
        if span is not None:
            span[1] = max(span[0], end)

    def link_down(self, node):
        self.calls.append(f"link_down {node}")
        now = self.clock.now
        self._span("dead", node, now)
        self._span("fib_out", node, now + self.detect_delay)
        self._span("hc_out", node, now + 3.3)

    def link_up(self, node):
        self.calls.append(f"link_up {node}")
        now = self.clock.now
        self._close("dead", node, now)
        self._close("fib_out", node, now + 2.5)
        self._close("hc_out", node, now + 2.5)

    def signal_speaker(self, node, sig):
        self.calls.append(f"signal_speaker {node} {sig}")
        now = self.clock.now
        self._span("stale", node, now + 0.05, now + self.restart)
        self._span("fib_out", node, now + self.restart)

    def start_speaker(self, node):
        self.calls.append(f"start_speaker {node}")
        self._close("stale", node, self.clock.now)
        self._close("fib_out", node, self.clock.now + 1.5)

    def stop_speaker_graceful(self, node):
        self.calls.append(f"stop_speaker_graceful {node}")
        self._span("fib_out", node, self.clock.now + 0.05)

    def stop_apiserver(self, node):
        self.calls.append(f"stop_apiserver {node}")
        self._span("apiserver_dead", node, self.clock.now)
        self._span("hc_out", node, self.clock.now + 3.3)

    def start_apiserver(self, node):
        self.calls.append(f"start_apiserver {node}")
        self._close("apiserver_dead", node, self.clock.now)
        self._close("hc_out", node, self.clock.now + 1.0)

    def restart_gateway_frr(self):
        self.calls.append("restart_gateway_frr")
        self.world.add("gateway_down", None, self.clock.now, self.clock.now + 6.5)  # idle hold 5 + dial 1.5
        self.clock.now += 2.0  # the restart call itself takes 2 s

    def verify(self):
        self.calls.append("verify")
        t = self.clock.now
        healthy = len(self.world.fib_nodes(t)) == len(self.nodes) and not any(
            math.isinf(span[1]) for span in self.open.values())
        return self.verifies and healthy


@pytest.fixture()
def ci_lab(tmp_path):
    clock = SimClock()
    lab = SimulatedLabDouble(clock, rendered_dir(tmp_path, hold=3, keepalive=1, restart=10),
                             "frr-8.4-neighbors-no-nbit-ci.json")
    return lab, clock


def drill(lab, clock, scenario, **kw):
    return run_drill(lab, scenario, node=kw.pop("node", "cat01"), repeat=kw.pop("repeat", 1), rate=10.0,
                     options=DrillOptions(**kw), clock=clock.time, pause=clock.pause, say=lambda m: None)


def test_node_power_loss_runs_in_order_and_lands_inside_the_bounds(ci_lab):
    lab, clock = ci_lab
    result = drill(lab, clock, "node-power-loss")
    run = result.runs[0]
    assert [c for c in lab.calls if c != "verify"] == ["start ucg", "start client", "link_down cat01", "link_up cat01"]
    assert lab.calls[0] == "verify" and lab.calls[-1] == "verify"
    rows = {r.measure: r for r in run.rows}
    assert rows["detect"].verdict == "inside", rows["detect"]
    assert abs(run.analysis.measurements["detect"].value - 3.0) <= 0.2
    assert rows["recovery"].verdict == "inside" and rows["others_served"].verdict == "inside"
    assert run.verified_after and result.ok, [r for r in run.rows if r.verdict != "inside"]
    # the fault was held until the next-hop left the FIB, not for a fixed time
    assert run.fault.undo_start - run.fault.inject_start == pytest.approx(3.0, abs=0.5)
    assert lab.stopped_at.keys() == {"client", "ucg"}


def test_a_stale_period_the_gateway_facts_do_not_explain_is_flagged(tmp_path):
    clock = SimClock()
    # the double keeps the route for hold + restart (as with the N-bit) while FRR reports no N-bit
    lab = SimulatedLabDouble(clock, rendered_dir(tmp_path, hold=3, keepalive=1, restart=10),
                             "frr-8.4-neighbors-no-nbit-ci.json", detect_delay=13.0)
    run = drill(lab, clock, "node-power-loss").runs[0]
    rows = {r.measure: r for r in run.rows}
    assert rows["detect"].verdict == "outside" and rows["loss_window:traefik"].verdict == "outside"
    assert not run.ok and run.verified_after


def test_interrupt_undoes_the_fault_and_stops_the_agents(ci_lab):
    lab, clock = ci_lab
    clock.interrupt_after = clock.now + 5.0  # Ctrl-C while the link is down (baseline takes ~3 s)
    with pytest.raises(KeyboardInterrupt):
        drill(lab, clock, "node-power-loss")
    assert "link_down cat01" in lab.calls and lab.calls[-1] == "link_up cat01"
    assert set(lab.stopped_at) == {"client", "ucg"}
    clock.now += 3.0  # the double's gateway takes the route back 2.5 s after the link
    assert lab.verify()


def test_lab_must_verify_before_any_fault(ci_lab):
    lab, clock = ci_lab
    lab.verifies = False
    with pytest.raises(DrillError, match="does not verify"):
        drill(lab, clock, "apiserver-down")
    assert lab.calls == ["verify"]


def test_unknown_node_is_refused(ci_lab):
    lab, clock = ci_lab
    with pytest.raises(DrillError, match="cat09"):
        drill(lab, clock, "speaker-crash", node="cat09")


@pytest.mark.parametrize("scenario,undo", [("speaker-crash", "start_speaker cat01"),
                                           ("speaker-graceful-stop", "start_speaker cat01"),
                                           ("apiserver-down", "start_apiserver cat01"),
                                           ("gateway-restart", None)])
def test_every_scenario_lands_inside_its_bounds(ci_lab, scenario, undo):
    lab, clock = ci_lab
    result = drill(lab, clock, scenario)
    run = result.runs[0]
    bad = [r for r in run.rows if r.verdict not in ("inside", "info")]
    assert not bad and result.ok, bad
    if undo:
        assert lab.calls[-2] == undo
    assert run.verified_after


def test_speaker_crash_waits_for_the_restart_time(ci_lab):
    lab, clock = ci_lab
    run = drill(lab, clock, "speaker-crash").runs[0]
    assert run.analysis.measurements["stale"].value == pytest.approx(0.05, abs=0.21)
    assert run.analysis.measurements["detect"].value == pytest.approx(10.0, abs=0.21)


def test_main_runs_all_and_writes_the_report(ci_lab, tmp_path, capsys):
    lab, clock = ci_lab
    factory_args = {}

    def factory(**kw):
        factory_args.update(kw)
        return lab

    code = main(["--scenario", "all", "--json", "--out", str(tmp_path / "reports"), "--lab-name", "double"],
                lab_factory=factory, clock=clock.time, pause=clock.pause)
    out = capsys.readouterr()
    assert code == 0, out.err
    assert factory_args == {"name": "double", "inventory": None}
    doc = json.loads(out.out)
    assert [r["scenario"] for r in doc["runs"]] == ["node-power-loss", "speaker-crash", "speaker-graceful-stop",
                                                    "apiserver-down", "gateway-restart"]
    index = next((tmp_path / "reports" / "double").glob("*/index.md"))
    assert len(list(index.parent.glob("*.png"))) == 5
    assert "report.json" in index.read_text() and "scenario" in out.err


def test_main_exit_1_when_outside(tmp_path, capsys):
    clock = SimClock()
    lab = SimulatedLabDouble(clock, rendered_dir(tmp_path, hold=3, keepalive=1, restart=10),
                             "frr-8.4-neighbors-no-nbit-ci.json", detect_delay=13.0)
    code = main(["--scenario", "node-power-loss", "--out", str(tmp_path / "r")], lab_factory=lambda **kw: lab,
                clock=clock.time, pause=clock.pause)
    assert code == 1
    assert "OUTSIDE" in capsys.readouterr().out


def test_main_usage_errors():
    assert main(["--scenario", "bogus"], lab_factory=lambda **kw: None) == 2
    assert main(["--scenario", "all"]) == 2


def test_main_reports_a_broken_rendered_dir_clearly(tmp_path, capsys):
    clock = SimClock()
    lab = SimulatedLabDouble(clock, tmp_path / "missing", "frr-8.4-neighbors-no-nbit-ci.json")
    code = main(["--scenario", "apiserver-down", "--out", str(tmp_path / "r")], lab_factory=lambda **kw: lab,
                clock=clock.time, pause=clock.pause)
    assert code == 1 and "invoke gen" in capsys.readouterr().err
