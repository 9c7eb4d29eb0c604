"""Expected bounds from the rendered timers and FRR's negotiated capabilities (no Docker)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from generators.drill.bounds import (
    Bound,
    BoundInputs,
    bounds_for,
    inputs_from,
    syn_gap,
)
from generators.drill.design import load_design
from generators.drill.gateway import parse_gateway_facts
from generators.readback.durations import Duration, DurationError
from generators.versions import version_tuple as parse_version

SEED = Path(__file__).parent / "fixtures" / "seed"
DRILL = Path(__file__).parent / "fixtures" / "drill"
SEED_NODE = "10.31.0.218"
PI, PT, SI = 0.1, 1.0, 0.2  # probe interval, probe timeout, sample interval
TOL = 1.0 + SI


def rendered_dir(tmp_path: Path, hold: int = 15, keepalive: int = 5, restart: int = 120, gr: bool = True) -> Path:
    """A rendered directory in the layout contract, from the seed's reference documents."""
    root = tmp_path / f"rendered-{hold}-{keepalive}-{restart}-{gr}"
    (root / "cilium").mkdir(parents=True, exist_ok=True)
    docs = list(yaml.safe_load_all((SEED / "cilium-bgp.yaml").read_text()))
    for d in docs:
        if d["kind"] == "CiliumBGPPeerConfig":
            d["spec"]["timers"] = {"holdTimeSeconds": hold, "keepAliveTimeSeconds": keepalive}
            d["spec"]["gracefulRestart"] = {"enabled": gr, "restartTimeSeconds": restart}
    (root / "cilium" / "bgp.yaml").write_text(yaml.safe_dump_all(docs))
    shutil.copy(SEED / "kube-apiserver-bgp.yaml", root / "cilium" / "kube-apiserver-bgp.yaml")
    return root


def inputs(tmp_path: Path, *, hold=15, keepalive=5, restart=120, gr=True, nbit=True, facts_file=None,
           speaker="3.37.0") -> BoundInputs:
    design = load_design(rendered_dir(tmp_path, hold, keepalive, restart, gr))
    facts = None
    if facts_file:
        facts = parse_gateway_facts((DRILL / facts_file).read_text(), "FRRouting 8.4.4 (ucg) on Linux(6.1.0).", "")
    inp = inputs_from(design.bgp, design.health, facts, SEED_NODE, probe_interval=PI, probe_timeout=PT,
                      sample_interval=SI, node_count=3, speaker_version=speaker)
    if facts is None:  # no gateway read: state the negotiation explicitly
        inp = BoundInputs(**{**inp.__dict__, "gr_active": gr, "n_bit": nbit})
    return inp


def test_seed_design_is_read_from_rendered_files(tmp_path):
    d = load_design(rendered_dir(tmp_path))
    assert (d.bgp.hold, d.bgp.keepalive, d.bgp.gr_enabled, d.bgp.restart_time) == (15, 5, True, 120)
    assert d.bgp.source == "cilium/bgp.yaml: CiliumBGPPeerConfig/ucg-fiber-peer"
    hc = d.health
    assert (hc.interval, hc.timeout, hc.unhealthy_threshold, hc.healthy_threshold) == (1.0, 1.0, 3, 1)
    assert (hc.interval_jitter, hc.connect_timeout, hc.idle_timeout) == (0.1, 5.0, 3600.0)


def test_durations_must_be_protojson():
    assert float(Duration.parse("0.1s")) == 0.1
    with pytest.raises(DurationError, match="100ms"):
        Duration.parse("100ms")


@pytest.mark.parametrize("hold,keepalive,restart,nbit,low,high", [
    (15, 5, 120, True, 15 - 5 + 120 - TOL, 15 + 120 + TOL),  # seed, N-bit: hold + restart = 135 s
    (15, 5, 120, False, 15 - 5 - TOL, 15 + TOL),  # seed without N-bit: hold only
    (3, 1, 10, True, 3 - 1 + 10 - TOL, 13 + TOL),  # CI timers, N-bit
    (3, 1, 10, False, 3 - 1 - TOL, 3 + TOL),  # CI timers, no N-bit
])
def test_node_power_loss_detect(tmp_path, hold, keepalive, restart, nbit, low, high):
    b = bounds_for("node-power-loss", inputs(tmp_path, hold=hold, keepalive=keepalive, restart=restart, nbit=nbit))
    detect = b.bounds["detect"]
    assert detect.low == pytest.approx(max(0.0, low))
    assert detect.high == pytest.approx(high)
    assert ("hold + restart" in detect.reason) is nbit
    assert b.bounds["loss_window:traefik"].high == pytest.approx(high + PT)
    assert b.bounds["others_served"].expect is True


def test_node_power_loss_apiserver_window_covers_health_checks(tmp_path):
    b = bounds_for("node-power-loss", inputs(tmp_path, hold=3, keepalive=1, restart=10, nbit=False))
    hc = 1.1 + 3 * (1.0 + 0.1 + 1.0) + TOL  # silent backend: every failed check waits for its timeout
    assert b.bounds["loss_window:apiserver"].high == pytest.approx(max(3 + TOL, hc) + PT)
    assert "health checks" in b.bounds["loss_window:apiserver"].reason


def test_graceful_restart_off_ignores_restart_time(tmp_path):
    b = bounds_for("node-power-loss", inputs(tmp_path, gr=False, nbit=True))
    assert b.bounds["detect"].high == pytest.approx(15 + TOL)
    crash = bounds_for("speaker-crash", inputs(tmp_path, gr=False))
    assert crash.bounds["detect"].high == pytest.approx(TOL)
    assert "stale" not in crash.bounds


@pytest.mark.parametrize("restart", [120, 10])
def test_speaker_crash_keeps_stale_for_restart_time(tmp_path, restart):
    b = bounds_for("speaker-crash", inputs(tmp_path, restart=restart, nbit=True)).bounds
    assert b["stale"].high == pytest.approx(TOL)
    assert (b["detect"].low, b["detect"].high) == (pytest.approx(restart - TOL), pytest.approx(restart + TOL))
    assert "graceful restart kept stale routes" in b["detect"].reason
    assert b["longest_burst:traefik"].high == pytest.approx(PT + PI)


@pytest.mark.parametrize("speaker,nbit,stale", [("3.37.0", True, False), ("3.10.0", True, True),
                                                ("3.37.0", False, False)])
def test_graceful_stop_depends_on_n_bit_and_gobgp(tmp_path, speaker, nbit, stale):
    detect = bounds_for("speaker-graceful-stop", inputs(tmp_path, nbit=nbit, speaker=speaker)).bounds["detect"]
    if stale:
        assert detect.low == pytest.approx(120 - TOL) and "plain Cease" in detect.reason
    else:
        assert detect.low is None and detect.high == pytest.approx(TOL)
    assert ("Hard Reset" in detect.reason) is (nbit and speaker == "3.37.0")


@pytest.mark.parametrize("gr", [True, False])
def test_graceful_stop_without_a_cease_is_bounded_like_a_crash(tmp_path, gr):
    """Cilium's agent stop sends no Cease: whatever the N-bit and GoBGP version, the session just closes."""
    base = inputs(tmp_path, gr=gr, nbit=True, speaker="3.37.0")
    stop = bounds_for("speaker-graceful-stop", BoundInputs(**{**base.__dict__, "stop_sends_cease": False}))
    crash = bounds_for("speaker-crash", base)
    assert stop.scenario == "speaker-graceful-stop"
    assert set(stop.bounds) == set(crash.bounds)
    assert (stop.bounds["detect"].low, stop.bounds["detect"].high) == (crash.bounds["detect"].low,
                                                                       crash.bounds["detect"].high)
    assert "sends no Cease" in stop.bounds["detect"].reason
    if gr:  # FRR, a helper, keeps the routes stale for the whole restart time (the Hard Reset never comes)
        assert stop.bounds["detect"].low == pytest.approx(120 - TOL)
    with_cease = bounds_for("speaker-graceful-stop", base).bounds["detect"]
    assert with_cease.high == pytest.approx(TOL)  # GoBGP 3.37's Hard Reset


def test_apiserver_down_from_health_checks(tmp_path):
    b = bounds_for("apiserver-down", inputs(tmp_path)).bounds
    assert b["detect"].high == pytest.approx(1.1 + 3 * 1.1 + 1.0 + TOL + PI)  # refused: checks fail at once
    assert b["recovery"].high == pytest.approx(1 * 1.1 + 1.0 + 3 * PI + TOL)
    assert b["failed:traefik"].high == 0 and b["failed:traefik"].unit == "count"


def test_gateway_restart_window_includes_restart_duration(tmp_path):
    b = bounds_for("gateway-restart", inputs(tmp_path), restart_duration=0.5).bounds
    assert b["recovery"].high == pytest.approx(5.0 + 2.0 - 0.5 + TOL)
    assert b["loss_window:traefik"].high == pytest.approx(0.5 + b["recovery"].high + PT)
    assert b["detect"].high is None


def test_a_long_gateway_restart_waits_for_the_next_connect_retry(tmp_path):
    b = bounds_for("gateway-restart", inputs(tmp_path), restart_duration=30.0).bounds["recovery"]
    assert b.high == pytest.approx(5.0 + 2.0 + 2 * 120 - 30.0 + TOL) and "connect-retry" in b.reason


def test_gateway_facts_decide_n_bit(tmp_path):
    seed = inputs(tmp_path, facts_file="frr-8.4-neighbors-nbit.json")
    assert (seed.gr_active, seed.n_bit, seed.hold, seed.keepalive, seed.restart) == (True, True, 15, 5, 120)
    ci = inputs(tmp_path, facts_file="frr-8.4-neighbors-no-nbit-ci.json")
    assert (ci.n_bit, ci.hold, ci.keepalive, ci.restart) == (False, 3, 1, 10)
    assert bounds_for("node-power-loss", ci).bounds["detect"].high == pytest.approx(3 + TOL)


def test_n_bit_needs_frr_8_3_and_notification_on():
    text = (DRILL / "frr-8.4-neighbors-nbit.json").read_text()
    assert parse_gateway_facts(text, "FRRouting 8.4.4 (ucg)", "").n_bit_negotiated(SEED_NODE)
    assert not parse_gateway_facts(text, "FRRouting 8.4.4", "router bgp 64512\n no bgp graceful-restart notification\n"
                                   ).n_bit_negotiated(SEED_NODE)
    old = parse_gateway_facts((DRILL / "frr-8.1-neighbors.json").read_text(), "FRRouting 8.1 (ucg)", "")
    assert old.frr_version == (8, 1, 0) and not old.n_bit_negotiated(SEED_NODE)


def test_syn_gap_and_recovery_bound(tmp_path):
    assert syn_gap(120) == 57 and syn_gap(10) == 4
    b = bounds_for("node-power-loss", inputs(tmp_path)).bounds["recovery"]
    assert b.high == pytest.approx(57 + TOL) and "SYN" in b.reason


def test_bound_check_and_describe():
    b = Bound("detect", reason="r", low=1.0, high=2.0)
    assert [b.check(v) for v in (0.5, 1.5, 2.5, None)] == ["outside", "inside", "outside", "not measured"]
    assert b.describe() == "1.0..2.0 s"
    assert Bound("x", reason="r", expect=True).check(False) == "outside"
    assert Bound("x", reason="r").check(3.0) == "no bound"
    assert parse_version("v3.26") == (3, 26, 0)



def test_speaker_back_within_restart_time_keeps_the_next_hop(tmp_path):
    from generators.drill.bounds import bounds_for

    inp = inputs(tmp_path, hold=3, keepalive=1, restart=10)
    early = bounds_for("speaker-crash", inp, speaker_down_for=2.0).bounds["detect"]
    assert early.low == 2.0 and early.high is None and "keeps its next-hop" in early.reason
    assert early.check(0.3) == "outside" and early.check(3.1) == "inside"
    late = bounds_for("speaker-crash", inp, speaker_down_for=30.0).bounds["detect"]
    assert late.high is not None and late.low is not None  # back too late: the stale timer runs out first
