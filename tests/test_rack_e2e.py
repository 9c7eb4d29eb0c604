"""The rollout rehearsed on a real Cilium lab: ``rack.plan`` and ``rack.apply`` over real SSH to real sshd on
the gateway and the nodes, FRR's own vtysh, and the lab's real kube-apiserver, etcd and Cilium.

In order, on one lab (each test starts from the state the previous one left):

1. a converged lab: nothing to change on any target;
2. a change (BGP timers, and a fourth node with its address): the plan lists exactly those changes, apply
   makes them in order, verify passes with four next-hops per VIP, and a second apply changes nothing;
3. the node removed again: the gateway no longer has its neighbor, the EndpointSlice no longer its endpoint;
4. a frr.conf FRR refuses stops apply at the gateway step: exit 1, FRR's own line, running config unchanged;
5. a field owned by another field manager is a conflict in the plan, and apply leaves it alone;
6. a node whose SSH port does not answer: exit 3 naming it, within the connect timeout.

No test here contacts a rack address: every address is the lab's, reached from inside its client container.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TOPOLOGY

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
NAME, BRIDGE = "rack-ci", "sw-rack"
NEW_NODE, NEW_IP = "cat04", "10.31.0.150"


def cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "generators", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def inventory(path: Path, *, timers: tuple[int, int] | None = None, fourth: bool = False) -> str:
    doc: dict = {"include": str(TOPOLOGY / "lab-ci.yml"), "lab": {"name": NAME, "bridge": BRIDGE,
                                                                  "fidelity": "cilium"}}
    if timers:
        doc["bgp"] = {"timers": {"hold": timers[0], "keepalive": timers[1]}}
    if fourth:
        nodes = yaml.safe_load((TOPOLOGY / "rack.yml").read_text())["nodes"]
        doc["nodes"] = [*nodes, {"name": NEW_NODE, "address": NEW_IP}]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def plan(inv: str, *extra: str) -> tuple[int, dict]:
    res = cli("rack-plan", "--inventory", inv, "--json", *extra)
    assert res.returncode in (0, 1), res.stdout + res.stderr
    return res.returncode, json.loads(res.stdout)


def changes(doc: dict) -> set[tuple[str, str, str, str]]:
    return {(c["step"], c["target"], c["what"], c["action"]) for c in doc["targets"]}


def running_config() -> str:
    return subprocess.run(["docker", "exec", f"clab-{NAME}-ucg", "vtysh", "-c", "show running-config"],
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    inv = inventory(tmp_path_factory.mktemp("rack") / "rack-ci.yml")
    try:
        res = cli("lab-up", "--inventory", inv)
        assert res.returncode == 0, res.stdout + res.stderr
        yield inv
    finally:
        assert cli("lab-down", "--name", NAME).returncode == 0


def test_plan_on_a_converged_lab_changes_nothing(base):
    code, doc = plan(base)
    assert code == 0 and doc["changes"] == 0, doc["targets"]
    assert doc["schema"] == "rack-plan/1" and doc["site"] == f"lab {NAME}"
    skipped = {s["step"]: s["skipped"] for s in doc["steps"]}
    assert skipped["gateway"] is None and "no kubelet" in skipped["cilium-values"]


def test_a_change_is_planned_exactly_applied_in_order_and_verified(base, tmp_path):
    inv = inventory(tmp_path / "changed.yml", timers=(6, 2), fourth=True)
    code, doc = plan(inv)
    assert code == 0, doc["problems"]
    got = changes(doc)
    assert ("gateway", "gateway", "frr/frr.conf", "add") in got
    gateway = [c for c in doc["targets"] if c["step"] == "gateway"]
    assert [c["fields"] for c in gateway] == [[f"neighbor {NEW_IP} peer-group k3s-nodes"]]
    resources = {c["what"]: c for c in doc["targets"] if c["step"] == "resources"}
    assert set(resources) == {"CiliumBGPPeerConfig/ucg-fiber-peer", "EndpointSlice/kube-system/kube-apiserver-bgp"}
    assert resources["CiliumBGPPeerConfig/ucg-fiber-peer"]["fields"] == [
        "spec.timers.holdTimeSeconds", "spec.timers.keepAliveTimeSeconds"]
    assert resources["EndpointSlice/kube-system/kube-apiserver-bgp"]["fields"] == ["endpoints[3]"]
    new = {(c["what"], c["action"]) for c in doc["targets"] if c["target"] == NEW_NODE}
    assert new == {("machine", "create"), ("/etc/rancher/k3s/config.yaml", "create"),
                   ("/etc/rancher/k3s/cluster-token", "create")}
    others = [c for c in doc["targets"] if c["step"] == "nodes" and c["target"] != NEW_NODE]
    assert {c["target"] for c in others} == {"cat01", "cat02", "cat03"}  # every tls-san gains the new address
    assert all(c["what"] == "/etc/rancher/k3s/config.yaml" and all(f.startswith("tls-san") for f in c["fields"])
               for c in others)

    res = cli("rack-apply", "--inventory", inv, "--yes", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert [s["step"] for s in report["steps"]] == ["gateway", "cilium-values", "resources", "nodes"]
    assert [s["status"] for s in report["steps"]] == ["done", "skipped", "done", "done"]
    nodes_done = report["steps"][3]["changed"]
    order = [line.split(":")[0] for line in nodes_done if "wrote /etc/rancher/k3s/config.yaml" in line]
    assert order == ["cat02", "cat03", NEW_NODE, "cat01"]  # one at a time, the first server last

    res = cli("verify", "--inventory", inv, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    checks = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
    for role in ("apiserver", "traefik"):
        assert checks[f"fib:{role}"]["ok"] and "4 next-hops" in checks[f"fib:{role}"]["summary"]

    again = cli("rack-apply", "--inventory", inv, "--yes", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert [s["status"] for s in json.loads(again.stdout)["steps"]] == ["nothing", "skipped", "nothing", "nothing"]


def test_removing_the_node_removes_its_neighbor_and_endpoint(base, tmp_path):
    inv = inventory(tmp_path / "back.yml", timers=(6, 2))
    code, doc = plan(inv)
    got = changes(doc)
    assert ("gateway", "gateway", "frr/frr.conf", "remove") in got
    assert ("nodes", NEW_NODE, f"Node/{NEW_NODE}", "retire") in got
    res = cli("rack-apply", "--inventory", inv, "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert NEW_IP not in running_config()
    from generators.cluster.apply import get_object
    from generators.lab.lifecycle import load_lab

    lab = load_lab(inv)
    with lab.kube(f"https://{lab.nodes['cat01']}:6443") as api:
        eps = get_object(api, "discovery.k8s.io/v1", "EndpointSlice", "kube-apiserver-bgp", "kube-system")
        assert eps is not None
        assert NEW_IP not in json.dumps(eps["endpoints"])
        assert get_object(api, "v1", "Node", NEW_NODE) is None
    assert NEW_NODE not in lab.running_containers()
    code, doc = plan(inv)
    assert doc["changes"] == 0, doc["targets"]


def test_a_frr_conf_frr_refuses_changes_nothing(base, tmp_path):
    out = tmp_path / "bad"
    assert cli("gen", "--inventory", base, "--out", str(out)).returncode == 0
    conf = out / "frr" / "frr.conf"
    conf.write_text(conf.read_text().replace(" neighbor k3s-nodes remote-as 65000\n",
                                             " neighbor k3s-nodes remote-as 65000\n neighbor k3s-nodes timers 3 x\n"))
    before = running_config()
    res = cli("rack-apply", "--inventory", base, "--dir", str(out), "--only", "gateway", "--yes")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "FRR refuses the rendered frr.conf" in res.stderr and "Unknown command" in res.stderr
    assert "neighbor k3s-nodes timers 3 x" in res.stderr  # FRR's own line
    assert running_config() == before


def test_a_field_another_manager_owns_is_a_conflict_left_alone(base):
    from generators.cluster.apply import apply_documents, get_object
    from generators.lab.lifecycle import load_lab

    lab = load_lab(base)
    peer = {"apiVersion": "cilium.io/v2", "kind": "CiliumBGPPeerConfig", "metadata": {"name": "ucg-fiber-peer"},
            "spec": {"timers": {"holdTimeSeconds": 12}}}
    with lab.kube(f"https://{lab.nodes['cat01']}:6443") as api:
        apply_documents(api, [peer], field_manager="argocd-controller", force_conflicts=True)
    code, doc = plan(base, "--only", "resources")
    assert code == 1
    conflict = [c for c in doc["targets"] if c["action"] == "conflict"]
    assert conflict == [{"step": "resources", "target": "cluster", "what": "CiliumBGPPeerConfig/ucg-fiber-peer",
                         "action": "conflict", "fields": ["spec.timers.holdTimeSeconds (owned by argocd-controller)"]}]
    res = cli("rack-apply", "--inventory", base, "--only", "resources", "--yes")
    assert res.returncode == 1 and "owned by argocd-controller" in res.stderr
    with lab.kube(f"https://{lab.nodes['cat01']}:6443") as api:
        live = get_object(api, "cilium.io/v2", "CiliumBGPPeerConfig", "ucg-fiber-peer")
        assert live is not None and live["spec"]["timers"]["holdTimeSeconds"] == 12  # left alone
    res = cli("rack-apply", "--inventory", base, "--only", "resources", "--yes", "--force-conflicts")
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_node_whose_ssh_port_does_not_answer_is_named_within_the_timeout(base):
    node = f"clab-{NAME}-cat02"
    rule = ["INPUT", "-p", "tcp", "--dport", "22", "-j", "DROP"]
    subprocess.run(["docker", "exec", node, "iptables", "-I", *rule], check=True)
    try:
        t0 = time.monotonic()
        res = cli("rack-plan", "--inventory", base, "--only", "nodes")
        elapsed = time.monotonic() - t0
    finally:
        subprocess.run(["docker", "exec", node, "iptables", "-D", *rule], check=True)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "cannot reach cat02 (root@10.31.0.161:22)" in res.stderr and "did not answer in time" in res.stderr
    assert elapsed < 10 + 8  # the 10 s connect timeout, plus start-up and the node before it
