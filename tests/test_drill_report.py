"""Report output from SYNTHETIC runs: JSON shape (every raw sample), table, PNG, index.md."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from generators.drill.analysis import FaultTimes, analyse, verdict_rows
from generators.drill.bounds import bounds_for
from generators.drill.report import render_table, report_json, write_report
from generators.drill.runner import DrillResult, RunResult
from generators.drill.samples import parse_control, parse_probe

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "drill"))
from synth import SEED_NODES, SEED_VIPS, SynthWorld, control_lines, probe_lines  # noqa: E402
from test_drill_analysis import bound_inputs  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic_result(detect_after: float = 3.2) -> DrillResult:
    w = SynthWorld(dict(SEED_NODES), dict(SEED_VIPS))
    w.add("dead", "cat01", 10.0, 20.0)
    w.add("fib_out", "cat01", 10.0 + detect_after, 22.5)
    w.add("hc_out", "cat01", 13.3, 22.5)
    probe = parse_probe("\n".join(probe_lines(w, 5.0, 10.0, 26.0)))
    control = parse_control("\n".join(control_lines(w, 5.0, 0.2, 26.0)))
    fault = FaultTimes(10.0, 10.01, 20.0, 20.02)
    an = analyse("node-power-loss", probe, control, fault, "cat01", SEED_NODES["cat01"])
    inp = bound_inputs(hold=3.0, keepalive=1.0, restart=10.0, nbit=False)
    b = bounds_for("node-power-loss", inp)
    run = RunResult("node-power-loss", "cat01", 0, "npl-cat01-0-test", fault, inp, None, b, an, verdict_rows(an, b),
                    probe, control, verified_after=True, events=[(10.0, "fault injected")])
    return DrillResult(lab="synthetic", fidelity="cilium", runs=[run])


def test_report_json_has_every_raw_sample_and_the_bounds():
    res = synthetic_result()
    doc = json.loads(json.dumps(report_json([res])))  # must be plain JSON
    assert doc["schema"] == "drill-report/1" and doc["lab"] == "synthetic" and doc["ok"] is True
    assert doc["fidelity"] == "cilium"  # whose decisions the drilled lab ran
    run = doc["runs"][0]
    assert set(run) >= {"scenario", "node", "fault", "inputs", "bounds", "analysis", "rows", "samples", "events"}
    probe, control = run["samples"]["probe"], run["samples"]["control"]
    assert len(probe["attempts"]) == len(res.runs[0].probe.attempts) == 2 * 211
    assert set(probe["attempts"][0]) == {"vip", "k", "t_sched", "t_start", "outcome", "latency", "node", "detail"}
    assert len(control["samples"]) == len(res.runs[0].control.samples)
    assert set(control["samples"][0]["vips"]["traefik"]) == {"ip", "fib", "rib", "bgp"}
    detect = run["bounds"]["bounds"]["detect"]
    assert detect["reason"] and detect["high"] == res.runs[0].bounds.bounds["detect"].high
    assert {r["measure"]: r["verdict"] for r in run["rows"]}["detect"] == "inside"
    assert run["analysis"]["loss"]["traefik"]["failed"] > 0


def test_table_marks_outside_with_reason():
    res = synthetic_result(detect_after=8.0)  # hold 3 s, yet the next-hop stayed 8 s
    table = render_table([res])
    assert table.splitlines()[0].split() == ["scenario", "measure", "expected", "measured", "verdict"]
    assert "OUTSIDE" in table and "hold timer (3 s)" in table
    assert "Probe interval 0.10 s" in table
    assert not res.ok


def test_write_report_png_and_index(tmp_path):
    res = synthetic_result()
    index = write_report([res], tmp_path / "out")
    png = tmp_path / "out" / "npl-cat01-0-test.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 20_000
    text = index.read_text()
    assert "](npl-cat01-0-test.png)" in text and "](report.json)" in text
    assert json.loads((tmp_path / "out" / "report.json").read_text())["runs"][0]["run_id"] == "npl-cat01-0-test"
