"""The Cilium fidelity runs Cilium's own code: its speakers say so, and they make a decision only Cilium makes.

1. Every node's ``cilium-bgp-host`` reports the Cilium module and Cilium's GoBGP fork it was built with
   (from the binary's build info, not a literal), and the versions the lab's Go modules pin.
2. The seed's headline bug, rehearsed as hand-written files (``lab-up --rendered DIR``): the apiserver
   Service with ``externalTrafficPolicy: Local`` bound by the CCEC, and its EndpointSlice without cat03's
   endpoint. Cilium keeps advertising the VIP from all three nodes (the proxy redirect counts as local),
   while cat03's Envoy gets no endpoint: verify reports the blackhole on cat03.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TOPOLOGY
from generators import gobuild

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
NAME, BRIDGE = "ber1-proof", "sw-proof"
NODES = {"cat01": "10.31.0.218", "cat02": "10.31.0.161", "cat03": "10.31.0.132"}


def cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "generators", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    inv = tmp_path_factory.mktemp("proof") / "proof.yml"
    inv.write_text(f"include: {TOPOLOGY / 'lab.yml'}\nlab:\n  name: {NAME}\n  bridge: {BRIDGE}\n  fidelity: cilium\n")
    try:
        res = cli("lab-up", "--inventory", str(inv))
        assert res.returncode == 0, res.stdout + res.stderr
        yield inv
    finally:
        assert cli("lab-down", "--name", NAME).returncode == 0


def host_version(node: str) -> dict:
    code = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9235/version').read().decode())"
    out = subprocess.run(["docker", "exec", f"clab-{NAME}-{node}", "python3", "-c", code], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)


def test_every_speaker_is_ciliums_own_build(lab):
    pins = gobuild.Pins.read()
    fork, fork_version = pins.gobgp.split()
    for node in NODES:
        version = host_version(node)
        assert version["node"] == node
        assert version["cilium"]["path"] == "github.com/cilium/cilium"
        assert version["cilium"]["version"] == f"v{pins.cilium}"
        assert version["gobgp"]["path"] == "github.com/osrg/gobgp/v3"
        assert version["gobgp"]["replace"]["path"] == fork and version["gobgp"]["replace"]["version"] == fork_version
        assert version["ciliumVersion"].startswith(pins.cilium)


def test_etp_local_with_a_ccec_advertises_from_every_node_and_blackholes_the_one_without_a_backend(lab, tmp_path):
    hand = tmp_path / "hand"
    assert cli("gen", "--inventory", str(TOPOLOGY / "rack.yml"), "--out", str(hand)).returncode == 0
    path = hand / "cilium" / "kube-apiserver-bgp.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    for doc in docs:
        if doc["kind"] == "Service":
            doc["spec"]["externalTrafficPolicy"] = "Local"
        if doc["kind"] == "EndpointSlice":
            doc["endpoints"] = [e for e in doc["endpoints"] if e["nodeName"] != "cat03"]
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))

    up = cli("lab-up", "--inventory", str(lab), "--rendered", str(hand), "--json")
    assert up.returncode == 0, up.stdout + up.stderr
    res = cli("verify", "--inventory", str(lab), "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    checks = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
    # Cilium's decision: the VIP stays advertised from all three nodes, cat03 included
    assert checks["advertised:apiserver"]["ok"]
    assert set(checks["bgp-next-hops:apiserver"]["evidence"]["frr"]) == set(NODES.values())
    blackhole = checks["envoy-backends:10.31.0.80"]
    assert not blackhole["ok"] and blackhole["evidence"]["without_endpoints"] == ["cat03"]
    assert "cat03 advertises it but Cilium gave that node's Envoy no endpoint" in blackhole["summary"]
    # restore the inventory's own files, as a user would after the rehearsal
    back = cli("lab-up", "--inventory", str(lab))
    assert back.returncode == 0, back.stdout + back.stderr
    assert cli("verify", "--inventory", str(lab)).returncode == 0


def test_the_lab_writes_only_what_a_real_cluster_would_not(lab):
    """The objects the lab registers itself are those k3s, the Cilium agent or a controller manager would."""
    rendered = ROOT / "build" / "lab" / NAME / "rendered"
    assert (rendered / "MANIFEST.json").is_file()
    code = "print(open('/etc/lab/kubeconfig').read())"
    out = subprocess.run(["docker", "exec", f"clab-{NAME}-cat01", "python3", "-c", code], capture_output=True,
                         text=True, check=True).stdout
    assert "tokenFile" in out and "token:" not in out  # the node's kubeconfig names the token file only
    assert Path(ROOT / "build" / "lab" / NAME / "state" / "pki" / "admin.token").stat().st_mode & 0o077 == 0
