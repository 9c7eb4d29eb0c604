"""lab-up's decisions and waiting, without Docker: a scripted lab stands in for the containers."""

from __future__ import annotations

import json
import subprocess
from types import SimpleNamespace

import pytest

from conftest import TOPOLOGY
from generators.checks.verify import Expectation
from generators.errors import LabError
from generators.lab import converge, hostnet, lifecycle
from generators.lab.engine import ExecResult
from generators.lab.names import bridge_port
from generators.model import load_model

NODES = {"10.31.0.218": "cat01", "10.31.0.161": "cat02", "10.31.0.132": "cat03"}
VIPS = ("10.31.0.80", "10.31.0.81")


def expectation() -> Expectation:
    hops = frozenset(NODES)
    return Expectation(
        frozenset(NODES),
        {v: hops for v in VIPS},
        {VIPS[0]: "apiserver", VIPS[1]: "traefik"},
        {},
        NODES,
        VIPS[0],
        6443,
        "kube.example.org",
        VIPS[1],
    )


class ScriptedGateway:
    """Answers vtysh/ip like the gateway would while sessions come up one poll at a time."""

    def __init__(self, up_after_polls: int | None):
        self.polls, self.up_after = 0, up_after_polls
        self.gateway, self.lab = "ucg", SimpleNamespace(converge_timeout=5)

    def _up(self) -> list[str]:
        n = len(NODES) if self.up_after is not None and self.polls >= self.up_after else min(self.polls, 2)
        return list(NODES)[:n]

    def vtysh_json(self, command: str, timeout: float = 15):
        if command == "show bgp neighbors json":
            self.polls += 1
            return {ip: {"bgpState": "Established" if ip in self._up() else "Active"} for ip in NODES}
        vip = command.split()[3].split("/")[0]
        return {
            f"{vip}/32": [
                {
                    "protocol": "bgp",
                    "selected": True,
                    "nexthops": [{"ip": ip, "active": True, "fib": True} for ip in self._up()],
                }
            ]
        }

    def exec(self, node, argv, timeout=30):
        route = [{"dst": argv[-1], "nexthops": [{"gateway": ip} for ip in self._up()]}]
        return ExecResult(0, json.dumps(route), "")


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    monkeypatch.setattr(converge, "expectation_for", lambda lab: expectation())
    monkeypatch.setattr(converge, "POLL_S", 0.01)


def test_waits_until_sessions_and_fib_match_then_reports_progress_once_per_change():
    lab, lines = ScriptedGateway(up_after_polls=4), []
    snap = converge.wait_converged(lab, lines.append)
    assert set(snap["sessions"]) == set(NODES) and all(s == "Established" for s in snap["sessions"].values())
    assert all(set(snap["fib"][v]) == set(NODES) for v in VIPS)
    assert lines[-1].endswith("converged")
    assert len(lines) == len(set(line.split("s ", 1)[1] for line in lines))  # no repeated progress line


def test_gives_up_with_the_last_state_when_a_session_never_comes_up():
    with pytest.raises(LabError, match=r"did not converge within 0.3 s; last state: .*sessions 2/3 Established"):
        converge.wait_converged(ScriptedGateway(up_after_polls=None), lambda m: None, timeout=0.3)


def test_with_name_overrides_only_the_lab_name():
    model = load_model(TOPOLOGY / "lab.yml")
    renamed = lifecycle.with_name(model, "other")
    assert renamed.lab.name == "other" and renamed.lab.bridge == model.lab.bridge and renamed.nodes == model.nodes
    assert lifecycle.with_name(model, None) is model


class DeployLab:
    def __init__(self, containers):
        self.nodes, self.gateway, self.client = {"cat01": "x", "cat02": "y"}, "ucg", "client"
        self._containers = containers

    def running_containers(self):
        return self._containers


@pytest.mark.parametrize(
    "containers,rerendered,expected",
    [
        ({"ucg": "running", "client": "running", "cat01": "running", "cat02": "running"}, False, None),
        ({"ucg": "running", "client": "running", "cat01": "running", "cat02": "running"}, True, "--reconfigure"),
        ({"ucg": "running", "client": "running", "cat01": "exited", "cat02": "running"}, False, "--reconfigure"),
        ({}, False, "fresh"),
    ],
)
def test_deploy_only_when_something_is_missing_or_changed(monkeypatch, containers, rerendered, expected):
    calls, prepared = [], []
    monkeypatch.setattr(lifecycle, "_containerlab", lambda args, lab, log: calls.append(args))
    monkeypatch.setattr(lifecycle, "_prepare_ports", lambda lab, host, have, log: prepared.append(have) or [])
    lab = DeployLab(containers)
    lab.paths = SimpleNamespace(clab_file="lab.clab.yml")
    changed = lifecycle._deploy(lab, lambda m: None, rerendered, hostnet.HostState())
    assert prepared == ([] if expected is None else [set(containers)])  # ports recorded before any deploy
    if expected is None:
        assert calls == [] and changed == []
    elif expected == "fresh":
        assert calls == [["deploy", "-t", "lab.clab.yml"]]
    else:
        assert calls == [["deploy", "-t", "lab.clab.yml", "--reconfigure"]]


def test_summary_and_status_text():
    report = lifecycle.UpReport(
        "ber1-lab",
        [lifecycle.Phase("deploy", 4.7, ["containerlab deployed 5 nodes"]), lifecycle.Phase("converge", 1.4)],
        {"sessions": {ip: "Established" for ip in NODES}, "next_hops": {VIPS[0]: sorted(NODES)}},
    )
    text = lifecycle.format_up(report)
    assert "deploy 4.7s, converge 1.4s (total 6.1s)" in text and "changes: 1 (deploy 1;" in text
    assert json.loads(lifecycle.report_json(report))["phases"][0]["changed"] == ["containerlab deployed 5 nodes"]
    st = {
        "lab": "ber1-lab",
        "containers": {},
        "nodes": {"cat01": "10.31.0.218"},
        "vips": {},
        "sessions": {},
        "routes": {},
    }
    assert "no containers (lab is down)" in lifecycle.format_status(st)


def test_prepare_ports_records_them_first_and_deletes_only_those_of_nodes_without_a_container(
    monkeypatch, tmp_path
):
    """The kernel can keep a removed container's veth for minutes (docs/FACTS.md#machine); containerlab then
    refuses the deploy. The ports are in the host record before the deploy, so lab-down finds them too."""
    monkeypatch.setenv("K3S_BGP_LAB_STATE", str(tmp_path))
    model = load_model(TOPOLOGY / "lab.yml")
    ports = {n: bridge_port(model.lab.name, n) for n in ("ucg", "cat01", "cat02", "cat03")}
    lab = SimpleNamespace(model=model, name=model.lab.name)
    present = {ports["cat01"], ports["cat02"], "eth0"}
    deleted = []

    def runner(argv):
        if argv[:3] == ["ip", "link", "show"]:
            return subprocess.CompletedProcess(argv, 0 if argv[-1] in present else 1, "", "")
        if argv[:3] == ["ip", "link", "del"]:
            deleted.append(argv[-1])
            present.discard(argv[-1])
        return subprocess.CompletedProcess(argv, 0, "", "")

    host = hostnet.HostState()
    done = lifecycle._prepare_ports(lab, host, {"ucg", "cat01", "cat03", "client"}, lambda m: None, runner)
    assert deleted == [ports["cat02"]] and done == [f"deleted host port {ports['cat02']} (left by a removed "
                                                     "container of this lab)"]
    assert host.ports == sorted(ports.values())
    assert hostnet.HostState.load(tmp_path / "labs" / f"{model.lab.name}.json").ports == sorted(ports.values())
