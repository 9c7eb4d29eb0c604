"""End-to-end: a gateway that is no graceful-restart helper for the nodes (`gateway.graceful_restart: disabled`).

A twin lab on topology/lab-ci.yml's timers (hold 3, keepalive 1, Cilium's restart 10 s with the N-bit), its own
name and bridge, brought up once and taken down afterwards. With the gateway a helper, a silently lost node
stays hold + restart = 13 s; here it must leave at hold expiry (issue 13).
"""
from __future__ import annotations

import json

import pytest

from conftest import TOPOLOGY
from generators.drill import run_drill
from generators.drill.gateway import read_gateway_facts
from generators.lab.lifecycle import lab_down, lab_up, load_lab

pytestmark = pytest.mark.e2e

LAB_NAME, BRIDGE = "gr-off-ci", "sw-groff"


@pytest.fixture(scope="module")
def helper_off_lab(tmp_path_factory):
    inv = tmp_path_factory.mktemp("gr-off") / "lab-ci-helper-off.yml"
    inv.write_text(
        f"include: {TOPOLOGY / 'lab-ci.yml'}\n"
        f"lab:\n  name: {LAB_NAME}\n  bridge: {BRIDGE}\n  fidelity: twin\n"
        "gateway:\n  graceful_restart: disabled\n"
    )
    lab = load_lab(inv)
    assert not lab.model.gateway.gr_helper
    try:
        lab_up(lab, log=lambda m: None)
        yield lab
    finally:
        lab_down(lab.name, log=lambda m: None)


def _neighbors(lab) -> dict:
    res = lab.exec("ucg", ["vtysh", "-c", "show bgp neighbors json"], timeout=15)
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def test_gateway_is_no_helper_for_any_node(helper_off_lab):
    doc = _neighbors(helper_off_lab)
    facts = read_gateway_facts(helper_off_lab)
    for name, ip in helper_off_lab.nodes.items():
        peer = doc[ip]
        caps, gri = peer["neighborCapabilities"], peer["gracefulRestartInfo"]
        assert peer["bgpState"] == "Established", name
        # FRR 8.4.4 no longer advertises the capability: only the speaker's is received
        assert "gracefulRestart" not in caps and caps.get("gracefulRestartCapability") == "received", (name, caps)
        assert gri["localGrMode"] == "Disable" and gri["nBit"] is False, (name, gri)
        assert not facts.helper_for(ip) and not facts.gr_active(ip) and not facts.n_bit_negotiated(ip)


def test_node_power_loss_leaves_at_hold_expiry(helper_off_lab):
    result = run_drill(helper_off_lab, "node-power-loss", repeat=1, rate=10.0)
    run = result.runs[0]
    assert not run.errors, run.errors
    assert run.verified_after, "the lab must verify again after the drill"
    assert run.inputs is not None and not run.inputs.gr_active and not run.inputs.gateway_helper
    bad = [r for r in run.rows if r.verdict not in ("inside", "info")]
    assert not bad, "\n".join(f"{r.measure}: {r.measured}, expected {r.expected} ({r.reason})" for r in bad)
    detect = run.bounds.bounds["detect"]
    hold, restart = run.inputs.hold, run.inputs.restart
    assert detect.high == pytest.approx(hold + run.inputs.tolerance) and detect.high < hold + restart
    assert run.analysis.measurements["detect"].value <= detect.high


def test_speaker_crash_withdraws_at_once(helper_off_lab):
    result = run_drill(helper_off_lab, "speaker-crash", repeat=1, rate=10.0)
    run = result.runs[0]
    assert not run.errors and run.verified_after, run.errors
    assert "stale" not in run.bounds.bounds
    bad = [r for r in run.rows if r.verdict not in ("inside", "info")]
    assert not bad, "\n".join(f"{r.measure}: {r.measured}, expected {r.expected} ({r.reason})" for r in bad)
