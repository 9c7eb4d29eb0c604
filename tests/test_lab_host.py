"""Host wiring and the containerlab topology, without Docker (a recording fake stands in for `ip`/`iptables`)."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from conftest import TOPOLOGY
from generators.gen import render_inventory
from generators.lab import hostnet
from generators.lab.names import bridge_port


class FakeHost:
    """Keeps a bridge set and an iptables rule list, and answers `ip`/`iptables` argv like the real tools."""

    def __init__(self, bridges=(), rules=(), chains=("DOCKER-USER", "FORWARD")):
        self.bridges, self.rules, self.chains, self.calls = set(bridges), [list(r) for r in rules], set(chains), []
        self.ports: dict[str, list[str]] = {}

    def __call__(self, argv):
        self.calls.append(argv)
        rc = 0
        if argv[:4] == ["ip", "-j", "link", "show"]:
            ports = self.ports.get(argv[-1], [])
            return subprocess.CompletedProcess(argv, 0, json.dumps([{"ifname": p} for p in ports]), "")
        if argv[:3] == ["ip", "link", "show"]:
            rc = 0 if argv[-1] in self.bridges else 1
        elif argv[:3] == ["ip", "link", "add"]:
            self.bridges.add(argv[4])
        elif argv[:3] == ["ip", "link", "del"]:
            self.bridges.discard(argv[-1])
        elif argv[:3] == ["iptables", "-n", "-L"]:
            rc = 0 if argv[3] in self.chains else 1
        elif argv[:3] == ["iptables", "-S", "FORWARD"]:
            text = "\n".join(
                " ".join(["-A", *(f'"{w}"' if " " in w else w for w in r)]) for r in self.rules if r[0] == "FORWARD"
            )
            return subprocess.CompletedProcess(argv, 0, text, "")
        elif argv[:2] == ["iptables", "-C"]:
            rc = 0 if argv[2:] in self.rules else 1
        elif argv[:2] == ["iptables", "-I"]:
            self.rules.insert(0, argv[2:])
        elif argv[:2] == ["iptables", "-D"]:
            self.rules.remove(argv[2:])
        return subprocess.CompletedProcess(argv, rc, "", "")


def test_up_creates_bridge_and_rule_then_is_idempotent():
    host, state, logs = FakeHost(), hostnet.HostState(), []
    changed = hostnet.ensure_bridge_and_rules("switch", state, logs.append, host)
    assert "switch" in host.bridges and host.rules == [["DOCKER-USER", "-i", "switch", "-o", "switch", "-j", "ACCEPT"]]
    assert len(changed) == 2 and state.bridge_created
    assert hostnet.ensure_bridge_and_rules("switch", state, logs.append, host) == []
    assert len(host.rules) == 1


def test_down_removes_only_what_up_added():
    foreign = ["DOCKER-USER", "-i", "docker0", "-o", "docker0", "-j", "ACCEPT"]
    host, state = FakeHost(rules=[foreign]), hostnet.HostState()
    hostnet.ensure_bridge_and_rules("switch", state, lambda m: None, host)
    hostnet.teardown(state, lambda m: None, host)
    assert host.rules == [foreign] and "switch" not in host.bridges
    assert hostnet.teardown(state, lambda m: None, host) == []  # second down: nothing left to do


def test_down_also_removes_containerlab_rules_for_our_bridge():
    clab_rule = ["FORWARD", "-o", "switch", "-m", "comment", "--comment", "set by containerlab", "-j", "ACCEPT"]
    other = ["FORWARD", "-o", "br-other", "-m", "comment", "--comment", "set by containerlab", "-j", "ACCEPT"]
    host, state = FakeHost(), hostnet.HostState()
    hostnet.ensure_bridge_and_rules("switch", state, lambda m: None, host)
    host.rules += [clab_rule, other]  # what `containerlab deploy` adds for its bridge kind
    hostnet.teardown(state, lambda m: None, host)
    assert host.rules == [other]


def test_existing_bridge_is_not_deleted_on_down():
    host, state = FakeHost(bridges={"switch"}), hostnet.HostState()
    hostnet.ensure_bridge_and_rules("switch", state, lambda m: None, host)
    hostnet.teardown(state, lambda m: None, host)
    assert "switch" in host.bridges and host.rules == []


def test_falls_back_to_forward_chain_without_docker_user():
    host, state = FakeHost(chains=("FORWARD",)), hostnet.HostState()
    hostnet.ensure_bridge_and_rules("switch", state, lambda m: None, host)
    assert host.rules[0][0] == "FORWARD"


def test_state_round_trips(tmp_path):
    state = hostnet.HostState("switch", True, [["FORWARD", "-i", "switch"]])
    state.save(tmp_path / "host.json")
    assert hostnet.HostState.load(tmp_path / "host.json") == state
    assert hostnet.HostState.load(tmp_path / "missing.json") == hostnet.HostState()


def test_clab_topology_wires_every_node_to_the_switch_and_client_behind_gateway():
    topo = yaml.safe_load(render_inventory(TOPOLOGY / "lab.yml")["lab.clab.yml"])
    nodes, links = topo["topology"]["nodes"], topo["topology"]["links"]
    assert topo["name"] == "ber1-lab"
    # no containerlab bridge node and no management network: lab-up owns the switch bridge and attaches
    # the host ends of the eth1 veths to it (so nothing of containerlab's is left on the host)
    assert set(nodes) == {"ucg", "cat01", "cat02", "cat03", "client"}
    assert topo["mgmt"] == {"skip-when-unused": True} and topo["topology"]["defaults"]["network-mode"] == "none"
    eps = [tuple(link["endpoints"]) for link in links]
    for n in ("ucg", "cat01", "cat02", "cat03"):
        assert (f"{n}:eth1", f"host:{bridge_port('ber1-lab', n)}") in eps
    assert ("ucg:eth2", "client:eth1") in eps
    for node in nodes.values():
        if node["kind"] == "linux":
            assert node["restart-policy"] == "no"  # Docker restarts would drop the lab links
            assert node["image"].startswith("k3s-bgp-lab/")
    # frr.conf is applied by configure (as rack.apply does it), not bound: `write memory` must replace it
    assert nodes["ucg"]["binds"] == ["frr/daemons:/etc/frr/daemons"]
    assert "ip addr add 10.31.0.218/24 dev eth1" in nodes["cat01"]["exec"]
    assert "ip route replace default via 192.0.2.1 dev eth1" in nodes["client"]["exec"]
    assert nodes["ucg"]["sysctls"]["net.ipv4.fib_multipath_hash_policy"] == "1"


def test_bridge_ports_are_unique_per_lab_and_fit_interface_names():
    a, b = bridge_port("ber1-lab", "cat01"), bridge_port("ber1-ci", "cat01")
    assert a != b and a.startswith("cat01-")
    assert len(bridge_port("x", "a-very-long-node-name-indeed")) <= 15


def test_a_bridge_with_another_labs_ports_is_refused():
    host = FakeHost(bridges={"switch"})
    host.ports["switch"] = ["cat01-9f2c", "ucg-9f2c"]
    with pytest.raises(hostnet.HostNetError, match="another lab"):
        hostnet.ensure_bridge_and_rules(
            "switch", hostnet.HostState(), lambda m: None, host, own_ports=frozenset({"cat01-1a2b"})
        )
    # our own ports (a second lab-up of the same lab) are fine: only the accept rule is added
    changed = hostnet.ensure_bridge_and_rules(
        "switch", hostnet.HostState(), lambda m: None, host, own_ports=frozenset({"cat01-9f2c", "ucg-9f2c"})
    )
    assert changed == ["iptables -I DOCKER-USER -i switch -o switch -j ACCEPT"]


def test_teardown_deletes_the_recorded_ports_a_dead_container_left_and_only_those():
    """The kernel keeps a removed container's namespace (and the host end of its veth) while a socket in it
    lives; lab-down deletes the ports lab-up recorded, and says so; a second run finds nothing to do."""
    host = FakeHost(bridges={"switch", "cat01-9f2c", "other0"})
    state = hostnet.HostState("switch", True, [], ports=["cat01-9f2c", "cat02-9f2c"])
    logs: list[str] = []
    done = hostnet.teardown(state, logs.append, host)
    assert done == ["deleted host port cat01-9f2c (its container is gone)", "deleted bridge switch"]
    assert host.bridges == {"other0"} and len(logs) == 2
    assert hostnet.teardown(state, logs.append, host) == []


def test_remove_ports_reports_a_failed_delete():
    class Refusing(FakeHost):
        def __call__(self, argv):
            if argv[:3] == ["ip", "link", "del"]:
                return subprocess.CompletedProcess(argv, 2, "", "RTNETLINK answers: Operation not permitted")
            return super().__call__(argv)

    with pytest.raises(hostnet.HostNetError, match="deleting host port cat01-9f2c.*not permitted"):
        hostnet.remove_ports(["cat01-9f2c"], "left over", lambda m: None, Refusing(bridges={"cat01-9f2c"}))
