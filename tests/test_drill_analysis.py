"""Sample analysis on SYNTHETIC streams with faults of known size (tests/fixtures/drill/synth.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from generators.drill.analysis import FaultTimes, analyse, loss_stats, verdict_rows
from generators.drill.bounds import BoundInputs, bounds_for
from generators.drill.design import BgpTimers, ProxyTimers
from generators.drill.samples import SampleError, parse_control, parse_probe

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "drill"))
from synth import SEED_NODES, SEED_VIPS, SynthWorld, control_lines, probe_lines  # noqa: E402

RATE, SAMPLE = 10.0, 0.2
PI = 1 / RATE


def streams(world: SynthWorld, until: float):
    probe = parse_probe("\n".join(probe_lines(world, 0.0, RATE, until)))
    control = parse_control("\n".join(control_lines(world, 0.0, SAMPLE, until)))
    return probe, control


def world() -> SynthWorld:
    return SynthWorld(dict(SEED_NODES), dict(SEED_VIPS))


def bound_inputs(hold=15.0, keepalive=5.0, restart=120.0, gr=True, nbit=False) -> BoundInputs:
    bgp = BgpTimers(hold, keepalive, 120.0, gr, restart, "test")
    hc = ProxyTimers(1.0, 1.0, 3, 1, 0.1, 5.0, 3600.0, "test")
    return BoundInputs(bgp=bgp, health=hc, gr_active=gr, n_bit=nbit, hold=hold, keepalive=keepalive, restart=restart,
                       probe_interval=PI, probe_timeout=1.0, sample_interval=SAMPLE, node_count=3)


def test_total_outage_window_is_measured_to_within_one_probe_interval():
    w = world()
    w.add("gateway_down", None, 10.0, 14.35)  # every attempt fails for exactly 4.35 s
    probe, control = streams(w, 30.0)
    fault = FaultTimes(inject_start=10.0, inject_end=12.0)
    an = analyse("gateway-restart", probe, control, fault, None, None)
    for vip in ("traefik", "apiserver"):
        loss = an.loss[vip]
        assert abs(loss.window - 4.35) <= PI
        assert loss.failed == 44 and loss.kinds == {"unreachable": 44}
        assert an.measurements[f"loss_window:{vip}"].resolution == PI
    assert an.measurements["detect"].value == pytest.approx(0.0)
    assert abs(an.measurements["recovery"].value - (14.35 - 12.0)) <= SAMPLE


def node_power_loss_world(also_dead: str | None = None) -> SynthWorld:
    w = world()
    w.add("dead", "cat01", 10.0, 40.0)  # link down at 10, up at 40
    w.add("fib_out", "cat01", 25.3, 43.1)  # hold expiry took 15.3 s; back 3.1 s after the link
    w.add("hc_out", "cat01", 13.4, 43.2)
    if also_dead:
        w.add("dead", also_dead, 10.0, 40.0)
    return w


def test_node_power_loss_detect_loss_recovery_and_others():
    probe, control = streams(node_power_loss_world(), 60.0)
    fault = FaultTimes(10.0, 10.01, 40.0, 40.05)
    an = analyse("node-power-loss", probe, control, fault, "cat01", SEED_NODES["cat01"])
    detect = an.measurements["detect"]
    assert abs(detect.value - 15.3) <= SAMPLE and detect.resolution == pytest.approx(SAMPLE)
    # one flow in three hashes to the dead node: each window edge is known to within 3 probe intervals,
    # and the measured first->last window lies inside the true one
    assert 0 <= 15.3 - an.loss["traefik"].window <= 2 * 3 * PI
    assert an.loss["traefik"].share == pytest.approx(1 / 3, abs=0.05)
    assert abs(an.measurements["recovery"].value - (43.1 - 40.05)) <= SAMPLE
    assert an.measurements["others_served"].value is True
    assert an.baseline_fib["traefik"] == sorted(SEED_NODES.values())
    assert an.baseline_failures == {"apiserver": 0, "traefik": 0}


def test_others_not_serving_is_reported():
    probe, control = streams(node_power_loss_world(also_dead="cat02"), 60.0)
    an = analyse("node-power-loss", probe, control, FaultTimes(10.0, 10.01, 40.0, 40.05), "cat01", SEED_NODES["cat01"])
    m = an.measurements["others_served"]
    assert m.value is False and "traefik:cat02" in m.detail


def test_verdicts_flag_a_detect_outside_the_n_bit_bound():
    probe, control = streams(node_power_loss_world(), 60.0)
    an = analyse("node-power-loss", probe, control, FaultTimes(10.0, 10.01, 40.0, 40.05), "cat01", SEED_NODES["cat01"])
    rows = {r.measure: r for r in verdict_rows(an, bounds_for("node-power-loss", bound_inputs(nbit=False)))}
    assert rows["detect"].verdict == "inside"
    assert rows["others_served"].verdict == "inside"
    # had the N-bit been negotiated, FRR would have kept the route ~135 s: 15.3 s is then OUTSIDE (too early)
    rows = {r.measure: r for r in verdict_rows(an, bounds_for("node-power-loss", bound_inputs(nbit=True)))}
    assert rows["detect"].verdict == "outside" and "hold + restart" in rows["detect"].reason


def test_apiserver_down_detect_and_recovery_from_probe():
    w = world()
    w.add("apiserver_dead", "cat01", 10.0, 30.0)
    w.add("hc_out", "cat01", 13.9, 31.0)  # health checks took 3.9 s; healthy again 1.0 s after start
    probe, control = streams(w, 40.0)
    fault = FaultTimes(10.0, 10.01, 30.0, 30.02)
    an = analyse("apiserver-down", probe, control, fault, "cat01", SEED_NODES["cat01"])
    assert abs(an.measurements["detect"].value - 3.9) <= PI
    assert abs(an.measurements["recovery"].value - (31.0 - 30.02)) <= 3 * PI
    assert an.loss["traefik"].failed == 0 and an.loss["apiserver"].failed > 0
    assert set(an.loss["apiserver"].kinds) == {"reset"}
    rows = {r.measure: r.verdict for r in verdict_rows(an, bounds_for("apiserver-down", bound_inputs()))}
    assert rows == {"detect": "inside", "loss_window:apiserver": "inside", "recovery": "inside",
                    "failed:traefik": "inside", "others_served": "inside", "loss_window:traefik": "info"}


def test_speaker_crash_stale_then_removed():
    w = world()
    w.add("stale", "cat01", 10.05, 20.0)
    w.add("fib_out", "cat01", 20.0, 26.0)  # restart time 10 s, speaker back at 22 -> routes at 26
    probe, control = streams(w, 35.0)
    an = analyse("speaker-crash", probe, control, FaultTimes(10.0, 10.0, 22.0, 22.01), "cat01", SEED_NODES["cat01"])
    assert abs(an.measurements["stale"].value - 0.05) <= SAMPLE
    assert abs(an.measurements["detect"].value - 10.0) <= SAMPLE
    assert an.loss["traefik"].failed == 0
    rows = {r.measure: r.verdict for r in verdict_rows(an, bounds_for("speaker-crash", bound_inputs(restart=10)))}
    assert rows["detect"] == "inside" and rows["stale"] == "inside" and rows["longest_burst:traefik"] == "inside"
    assert rows["recovery"] == "outside"  # 4 s > 2 s + tolerance: the synthetic speaker came back too slowly


def test_loss_stats_bursts():
    w = world()
    w.add("gateway_down", None, 5.0, 6.0)
    w.add("gateway_down", None, 8.0, 8.5)
    probe, _ = streams(w, 12.0)
    stats = loss_stats(probe.attempts, "traefik", 0.0, 12.0)
    assert len(stats.bursts) == 2
    assert stats.longest_burst == pytest.approx(0.9)
    assert stats.window == pytest.approx(8.4 - 5.0)


def test_parsers_reject_missing_meta_and_tolerate_a_cut_last_line():
    with pytest.raises(SampleError, match="no meta"):
        parse_probe('{"type": "attempt"}\n')
    lines = probe_lines(world(), 0.0, RATE, 1.0)
    run = parse_probe("\n".join(lines) + '\n{"type": "attempt", "vip"')
    assert len(run.attempts) == 2 * 11 and not run.ended


def test_recovery_that_never_came_is_a_censored_lower_bound():
    w = world()
    w.add("apiserver_dead", "cat01", 10.0)  # never restarted within the samples
    w.add("hc_out", "cat01", 13.9)
    probe, control = streams(w, 25.0)
    an = analyse("apiserver-down", probe, control, FaultTimes(10.0, 10.01, 20.0, 20.02), "cat01", SEED_NODES["cat01"])
    rec = an.measurements["recovery"]
    assert rec.censored and rec.value == pytest.approx(25.0 - 20.02)
    rows = {r.measure: r for r in verdict_rows(an, bounds_for("apiserver-down", bound_inputs()))}
    assert rows["recovery"].verdict == "outside" and rows["recovery"].measured.startswith("> 4.98 s")


def test_node_power_loss_apiserver_window_ends_when_the_node_is_back_and_its_return_is_reported():
    """A real kube-apiserver whose etcd member was cut off answers 500 for a while after its node is back,
    and the TCP health check sends it traffic at once: that is the return's cost, not the loss window's."""
    w = node_power_loss_world()
    w.add("apiserver_dead", "cat01", 40.0, 45.0)  # reachable again at 40, serving only from 45
    probe, control = streams(w, 60.0)
    fault = FaultTimes(10.0, 10.01, 40.0, 40.05)
    an = analyse("node-power-loss", probe, control, fault, "cat01", SEED_NODES["cat01"])
    assert an.loss["apiserver"].window <= 40.0 - 10.0
    after = an.measurements["failed_after_undo:apiserver"]
    assert after.value > 0 and "reset" in after.detail
    rows = {r.measure: r for r in verdict_rows(an, bounds_for("node-power-loss", bound_inputs()))}
    assert rows["failed_after_undo:apiserver"].verdict == "info"
    assert "etcd" in rows["failed_after_undo:apiserver"].reason
    # without the returning apiserver's failures there is nothing to report
    an = analyse("node-power-loss", *streams(node_power_loss_world(), 60.0), fault, "cat01", SEED_NODES["cat01"])
    assert an.measurements["failed_after_undo:apiserver"].value == 0
    assert "failed_after_undo:apiserver" not in {r.measure for r in verdict_rows(an, bounds_for(
        "node-power-loss", bound_inputs()))}
