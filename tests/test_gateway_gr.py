"""`gateway.graceful_restart`: the gateway's graceful-restart helper role for the nodes (issue 13).

`disabled` renders one `neighbor <node address> graceful-restart-disable` per node and nothing else; real FRR
accepts it; preflight's TIMER-GR-COST follows it; the drill bounds follow what FRR reports it does. The FRR
JSON below was captured from FRR 8.4.4 in the lab (docs/FACTS.md#graceful-restart).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import TOPOLOGY
from generators import schemas as S
from generators.drill.bounds import PROCESSING_SLACK, bounds_for, inputs_from
from generators.drill.design import BgpTimers
from generators.drill.gateway import parse_gateway_facts
from generators.errors import InventoryError
from generators.model import load_model
from generators.output import MANIFEST, write_tree
from generators.pipeline import render_inventory
from generators.preflight import run as preflight

RACK = TOPOLOGY / "rack.yml"
NODES = ("10.31.0.218", "10.31.0.161", "10.31.0.132")  # the rack's nodes, in inventory order
FRR_8_4 = "FRRouting 8.4.4 (ucg) on Linux(6.1.0)."
DRILL = Path(__file__).parent / "fixtures" / "drill"


def inventory(tmp_path: Path, setting: str | None, base: Path = RACK) -> Path:
    inv = tmp_path / f"gr-{setting}.yml"
    gateway = "" if setting is None else f"gateway:\n  graceful_restart: {setting}\n"
    inv.write_text(f"include: {base}\n{gateway}")
    return inv


@pytest.fixture(scope="module")
def disabled_files(tmp_path_factory) -> dict[str, str]:
    return render_inventory(inventory(tmp_path_factory.mktemp("gr"), "disabled"))


# ----------------------------------------------------------------------------- rendering
def test_disabled_adds_only_one_line_per_node_after_its_peer_group_line(rack_files, disabled_files):
    assert set(disabled_files) == set(rack_files)
    changed = {f for f in rack_files if rack_files[f] != disabled_files[f]}
    assert changed == {"frr/frr.conf", MANIFEST}, changed
    before, after = rack_files["frr/frr.conf"].splitlines(), disabled_files["frr/frr.conf"].splitlines()
    added = [line for line in after if line not in before]
    assert added == [f" neighbor {ip} graceful-restart-disable" for ip in NODES]
    assert [line for line in after if line not in added] == before  # nothing else moved or changed
    for ip in NODES:  # FRR's own writer order: right after the line that defines the neighbor
        i = after.index(f" neighbor {ip} peer-group k3s-nodes")
        assert after[i + 1] == f" neighbor {ip} graceful-restart-disable"
    assert after.index(" address-family ipv4 unicast") > after.index(f" neighbor {NODES[-1]} graceful-restart-disable")
    assert "neighbor k3s-nodes graceful-restart" not in disabled_files["frr/frr.conf"]


def test_manifest_differs_only_in_frr_conf_and_the_inventory_digest(rack_files, disabled_files):
    a, b = json.loads(rack_files[MANIFEST]), json.loads(disabled_files[MANIFEST])
    assert {k: v for k, v in a["files"].items() if k != "frr/frr.conf"} == {
        k: v for k, v in b["files"].items() if k != "frr/frr.conf"
    }
    assert a["files"]["frr/frr.conf"] != b["files"]["frr/frr.conf"]
    assert {k: v for k, v in a.items() if k not in ("files", "inventory")} == {
        k: v for k, v in b.items() if k not in ("files", "inventory")
    }
    assert a["inventory"]["name"] == b["inventory"]["name"]


def test_helper_is_the_default_and_renders_todays_output(tmp_path, rack_files):
    explicit = render_inventory(inventory(tmp_path, "helper"))
    def files(fs: dict[str, str]) -> dict[str, str]:
        return {f: t for f, t in fs.items() if f != MANIFEST}

    assert files(explicit) == files(rack_files)
    assert load_model(RACK).gateway.graceful_restart == "helper" and load_model(RACK).gateway.gr_helper
    assert not load_model(inventory(tmp_path, "disabled")).gateway.gr_helper


def test_lab_inventory_renders_the_lines_too(tmp_path):
    files = render_inventory(inventory(tmp_path, "disabled", TOPOLOGY / "lab-ci.yml"))
    assert files["frr/frr.conf"].count("graceful-restart-disable") == len(NODES)


@pytest.mark.skipif(shutil.which("vtysh") is None, reason="needs FRR's vtysh (invoke test installs it)")
def test_real_frr_accepts_the_rendered_lines(disabled_files):
    result = S.frr_dryrun(disabled_files["frr/frr.conf"])
    assert result.ok, result.output


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "value,why",
    [
        ("off", "YAML reads off/on/no/yes unquoted as a boolean; must be one of helper, disabled"),
        ("false", "must be one of helper, disabled"),
        ("'off'", "must be one of helper, disabled"),
        ("restart", "must be one of helper, disabled"),
        ("Disabled", "must be one of helper, disabled"),
        ("[disabled]", "expected a string"),
    ],
)
def test_bad_value_is_rejected_with_the_path_and_the_allowed_values(tmp_path, value, why):
    inv = inventory(tmp_path, value)
    with pytest.raises(InventoryError) as err:
        load_model(inv)
    (problem,) = err.value.problems
    assert problem.path == "gateway.graceful_restart" and problem.file == str(inv)
    assert why in problem.why, problem.render()
    assert "`helper`" in problem.fix and "`disabled`" in problem.fix, problem.fix


# ----------------------------------------------------------------------------- preflight
def _gr_cost(files: dict[str, str], tmp_path: Path, frr_version: str | None = None) -> list:
    report = preflight(write_tree(files, tmp_path / "rendered"), frr_version=frr_version)
    return [f for f in report.findings if f.id == "TIMER-GR-COST"]


def test_preflight_fix_names_the_inventory_field_and_the_frr_lines(tmp_path, rack_files):
    (finding,) = _gr_cost(rack_files, tmp_path)
    assert "`gateway.graceful_restart: disabled`" in finding.fix
    assert "`neighbor 10.31.0.218 graceful-restart-disable`" in finding.fix
    assert "one line per node: 10.31.0.218, 10.31.0.161, 10.31.0.132" in finding.fix


@pytest.mark.parametrize("frr_version", [None, "8.4.4", "10.2.0"])
def test_preflight_is_quiet_on_the_rendered_lines(tmp_path, disabled_files, frr_version):
    assert _gr_cost(disabled_files, tmp_path, frr_version) == []


def _peer_group_only(rack_files: dict[str, str]) -> dict[str, str]:
    conf = rack_files["frr/frr.conf"].replace(
        " neighbor k3s-nodes remote-as 65000\n",
        " neighbor k3s-nodes remote-as 65000\n neighbor k3s-nodes graceful-restart-disable\n",
    )
    return {**rack_files, "frr/frr.conf": conf}


@pytest.mark.parametrize("frr_version", [None, "8.4.4"])
def test_a_peer_group_line_alone_does_not_count_before_frr_10_2(tmp_path, rack_files, frr_version):
    """Measured on FRR 8.4.4: the members of a peer-group with graceful-restart-disable stay helpers."""
    (finding,) = _gr_cost(_peer_group_only(rack_files), tmp_path, frr_version)
    assert "FRR before 10.2 does not apply a peer-group's graceful-restart mode" in finding.message


def test_a_peer_group_line_counts_from_frr_10_2(tmp_path, rack_files):
    assert _gr_cost(_peer_group_only(rack_files), tmp_path, "10.2.1") == []


def test_one_node_left_a_helper_still_warns(tmp_path, disabled_files):
    conf = disabled_files["frr/frr.conf"].replace(" neighbor 10.31.0.132 graceful-restart-disable\n", "")
    assert len(_gr_cost({**disabled_files, "frr/frr.conf": conf}, tmp_path)) == 1


# ----------------------------------------------------------------------------- what FRR reports, and the bounds
def _neighbor(caps: dict, gri: dict) -> dict:
    """One neighbor of `show bgp neighbors json` (FRR 8.4.4, CI timers: hold 3, keepalive 1), the keys we read."""
    return {
        "remoteAs": 65000,
        "bgpState": "Established",
        "bgpTimerHoldTimeMsecs": 3000,
        "bgpTimerKeepAliveIntervalMsecs": 1000,
        "connectRetryTimer": 120,
        "peerGroup": "k3s-nodes",
        "neighborCapabilities": {"4byteAs": "advertisedAndReceived", **caps, "gracefulRestartRemoteTimerMsecs": 10000},
        "gracefulRestartInfo": {"endOfRibSend": {"ipv4Unicast": True}, **gri,
                                "timers": {"configuredRestartTimer": 120, "receivedRestartTimer": 10}},
    }


# FRR's default (helper), GoBGP 3.37 with GR and the N-bit
HELPER = _neighbor({"gracefulRestart": "advertisedAndReceived"},
                   {"localGrMode": "Helper*", "remoteGrMode": "Restart", "rBit": True, "nBit": True})
# `neighbor X graceful-restart-disable` from the start (the rendered file): FRR no longer advertises the capability
DISABLED = _neighbor({"gracefulRestartCapability": "received"},
                     {"localGrMode": "Disable", "remoteGrMode": "NotApplicable", "rBit": False, "nBit": False})
# the line added on a running gateway, session not reset: the old OPEN's capability, but FRR keeps nothing stale
DISABLED_NOT_RESET = _neighbor({"gracefulRestart": "advertisedAndReceived"},
                               {"localGrMode": "Disable", "remoteGrMode": "Restart", "rBit": True, "nBit": True})
# the peer-group line alone on FRR 8.4.4: the members stay helpers
GROUP_LINE_ONLY = HELPER

CI = BgpTimers(hold=3, keepalive=1, connect_retry=120, gr_enabled=True, restart_time=10, source="test")
TOL = PROCESSING_SLACK + 0.2


def _facts(doc: dict):
    return parse_gateway_facts(json.dumps({"10.31.0.218": doc}), FRR_8_4, "router bgp 64512\n")


def _inputs(doc: dict):
    return inputs_from(CI, None, _facts(doc), "10.31.0.218", probe_interval=0.1, probe_timeout=1.0,
                       sample_interval=0.2, node_count=3)


@pytest.mark.parametrize("doc,helper,active", [
    (HELPER, True, True),
    (GROUP_LINE_ONLY, True, True),
    (DISABLED, False, False),
    (DISABLED_NOT_RESET, False, False),
], ids=["helper", "peer-group-line-only", "disabled", "disabled-not-reset"])
def test_gateway_facts_read_the_helper_role(doc, helper, active):
    facts = _facts(doc)
    assert facts.helper_for("10.31.0.218") is helper
    assert facts.gr_active("10.31.0.218") is active
    peer = facts.to_json()["peers"]["10.31.0.218"]
    assert (peer["helper"], peer["gr_active"]) == (helper, active)


def test_no_local_mode_key_means_frr_default_helper():
    doc = json.loads((DRILL / "frr-8.4-neighbors-nbit.json").read_text())
    del doc["10.31.0.218"]["gracefulRestartInfo"]["localGrMode"]
    facts = parse_gateway_facts(json.dumps(doc), FRR_8_4, "")
    assert facts.helper_for("10.31.0.218") and facts.gr_active("10.31.0.218")


@pytest.mark.parametrize("doc", [DISABLED, DISABLED_NOT_RESET], ids=["disabled", "disabled-not-reset"])
def test_helper_off_bounds_silent_loss_at_hold_and_restarts_at_once(doc):
    inp = _inputs(doc)
    assert (inp.gr_active, inp.gateway_helper, inp.hold, inp.keepalive) == (False, False, 3, 1)
    detect = bounds_for("node-power-loss", inp).bounds["detect"]
    assert detect.low == pytest.approx(3 - 1 - TOL)
    assert detect.high == pytest.approx(3 + TOL)
    assert "no graceful-restart helper" in detect.reason and "no stale period even with the N-bit" in detect.reason
    for scenario in ("speaker-crash", "speaker-graceful-stop"):
        b = bounds_for(scenario, inp).bounds
        assert b["detect"].high == pytest.approx(TOL) and b["detect"].low is None, scenario
        assert "stale" not in b and "no graceful-restart helper" in b["detect"].reason
    crash_back_early = bounds_for("speaker-crash", inp, speaker_down_for=2.0).bounds
    assert crash_back_early["detect"].high == pytest.approx(TOL) and "stale" not in crash_back_early


def test_helper_on_keeps_hold_plus_restart():
    inp = _inputs(HELPER)
    assert (inp.gr_active, inp.gateway_helper, inp.n_bit) == (True, True, True)
    assert bounds_for("node-power-loss", inp).bounds["detect"].high == pytest.approx(3 + 10 + TOL)
    assert bounds_for("speaker-crash", inp).bounds["detect"].high == pytest.approx(10 + TOL)


def test_inputs_json_says_whether_the_gateway_helps():
    assert _inputs(DISABLED).to_json()["gateway_helper"] is False
    assert _inputs(HELPER).to_json()["gateway_helper"] is True


def test_rendered_frr_conf_is_what_the_measured_gateway_ran(disabled_files):
    """The captured state above came from exactly these lines (lab-ci's nodes are the rack's)."""
    assert re.findall(r"(?m)^ neighbor (\S+) graceful-restart-disable$", disabled_files["frr/frr.conf"]) == list(NODES)
