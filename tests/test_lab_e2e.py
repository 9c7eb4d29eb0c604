"""End-to-end: a real containerlab lab comes up, verifies, and goes away without a trace, in both fidelities:
``cilium`` (topology/lab.yml: a real kube-apiserver + etcd, Cilium's operator and BGP control plane) and
``twin`` (topology/lab-twin.yml: GoBGP configured by the Python twin).

Needs root, Docker, containerlab and the lab images (`invoke test` installs and builds them).
Every probe of a lab address runs inside a lab container; this test only reads JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
NODES = {"10.31.0.218", "10.31.0.161", "10.31.0.132"}


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "generators", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def leftovers(name: str, bridge: str) -> list[str]:
    found = []
    ps = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label=containerlab={name}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
    )
    found += [f"container {c}" for c in ps.stdout.split()]
    if subprocess.run(["ip", "link", "show", "dev", bridge], capture_output=True).returncode == 0:
        found.append(f"bridge {bridge}")
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    found += [f"rule {r}" for r in rules.splitlines() if f"-i {bridge} " in r]
    if (ROOT / "build" / "lab" / name).exists():
        found.append(f"dir build/lab/{name}")
    return found


@pytest.fixture
def lab():
    def up(inventory: str, name: str):
        res = cli("lab-up", "--inventory", inventory, "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        return json.loads(res.stdout)

    started: list[tuple[str, str, str]] = []

    def start(inventory: str, name: str, bridge: str):
        started.append((inventory, name, bridge))
        return up(inventory, name)

    yield start
    for inventory, name, bridge in started:
        down = cli("lab-down", "--inventory", inventory)
        assert down.returncode == 0, down.stderr
        assert leftovers(name, bridge) == []


FIDELITIES = [("topology/lab.yml", "ber1-lab", "switch"), ("topology/lab-twin.yml", "ber1-twin", "sw-twin")]
CLUSTER_CHECKS = {"k8s-api-via-vip", "lbipam:kube-system/kube-apiserver-bgp", "lbipam:traefik/traefik",
                  "bgp-node-config:cat01", "bgp-node-config:cat02", "bgp-node-config:cat03", "pool-conditions:bgp-pool",
                  "envoy-backends:10.31.0.80"}


@pytest.mark.parametrize("inventory,name,bridge", FIDELITIES, ids=["cilium", "twin"])
def test_lab_up_verify_down(lab, inventory, name, bridge):
    report = lab(inventory, name, bridge)
    conv = report["converged"]
    assert {ip: s for ip, s in conv["sessions"].items()} == {ip: "Established" for ip in NODES}
    for vip in ("10.31.0.80", "10.31.0.81"):
        assert set(conv["next_hops"][vip]) == NODES and set(conv["fib"][vip]) == NODES

    res = cli("verify", "--inventory", inventory, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    checks = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
    assert (CLUSTER_CHECKS <= set(checks)) is (name == "ber1-lab")  # the Cilium fidelity's cluster checks
    assert all(c["ok"] for c in checks.values()), [c["summary"] for c in checks.values() if not c["ok"]]
    assert set(checks["bgp-sessions-established"]["evidence"]["bgpState"]) == NODES
    for role in ("apiserver", "traefik"):
        assert set(checks[f"bgp-next-hops:{role}"]["evidence"]["frr"]) == NODES
        assert set(checks[f"fib:{role}"]["evidence"]["kernel"]) == NODES
    tls = checks["apiserver-tls-healthz"]["evidence"]["probes"]
    assert [p["url"] for p in tls] == [
        "https://10.31.0.80:6443/healthz",
        "https://kube.dev.ber1.clustername.io:6443/healthz",
    ]
    assert set(checks["traefik-http-ecmp"]["evidence"]["answers_by_node"]) == {"cat01", "cat02", "cat03"}

    again = cli("lab-up", "--inventory", inventory, "--json")
    assert again.returncode == 0, again.stderr
    changes = [c for p in json.loads(again.stdout)["phases"] for c in p["changed"]]
    assert changes == []  # a second lab-up on a converged lab changes nothing


def test_unadvertised_traefik_service_fails_verify_with_its_cause(lab):
    """On the Cilium fidelity Cilium decides not to advertise; verify names the cause the files prove."""
    report = lab("topology/lab-unadvertised.yml", "ber1-neg", "sw-neg")
    assert set(report["converged"]["next_hops"]["10.31.0.80"]) == NODES
    assert report["converged"]["next_hops"]["10.31.0.81"] == []
    res = cli("verify", "--inventory", "topology/lab-unadvertised.yml", "--json")
    assert res.returncode == 1
    checks = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
    failed = sorted(n for n, c in checks.items() if not c["ok"])
    assert failed == ["advertised:traefik", "traefik-http-ecmp"]
    cause = checks["advertised:traefik"]["evidence"]["cause"]
    assert "traefik/traefik" in cause and "CiliumBGPAdvertisement/lb-services: app.kubernetes.io/name in" in cause
    assert checks["apiserver-tls-healthz"]["ok"] and checks["fib:apiserver"]["ok"]


def test_lab_down_is_idempotent():
    first = cli("lab-down", "--name", "ber1-never-up")
    assert first.returncode == 0 and "nothing was running" in first.stdout
