"""End-to-end drills in a real twin lab (marker e2e; needs Docker and containerlab).

They use the fixture ``running_ci_lab`` from tests/conftest.py: the CI inventory variant (short timers:
hold 3, keepalive 1, restart 10) brought up once, implementing ``generators.drill.lab_api.Lab``.
"""
from __future__ import annotations

import pytest

from generators.drill import run_drill
from generators.drill.lab_api import Lab

pytestmark = pytest.mark.e2e


@pytest.fixture()
def lab(running_ci_lab) -> Lab:
    return running_ci_lab


def _single_run(lab: Lab, scenario: str):
    assert isinstance(lab, Lab), "running_ci_lab must implement generators.drill.lab_api.Lab"
    result = run_drill(lab, scenario, repeat=1, rate=10.0)
    run = result.runs[0]
    assert not run.errors, run.errors
    assert run.verified_after, "the lab must verify again after the drill"
    return run


@pytest.mark.parametrize("scenario", ["node-power-loss", "apiserver-down"])
def test_drill_measurements_fall_inside_their_bounds(lab, scenario):
    run = _single_run(lab, scenario)
    bad = [r for r in run.rows if r.verdict not in ("inside", "info")]
    assert not bad, "\n".join(f"{r.measure}: {r.measured}, expected {r.expected} ({r.reason})" for r in bad)


def test_speaker_crash_keeps_stale_routes_for_the_restart_time(lab):
    run = _single_run(lab, "speaker-crash")
    node_ip = lab.nodes[run.node]
    assert run.gateway is not None and run.gateway.n_bit_negotiated(node_ip), "the twin's speakers set the N-bit"
    m = run.analysis.measurements
    assert m["stale"].value is not None and m["stale"].value <= run.bounds.bounds["stale"].high
    detect = run.bounds.bounds["detect"]
    assert detect.low <= m["detect"].value <= detect.high, (m["detect"], detect.reason)
