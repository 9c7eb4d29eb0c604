"""verify's checks on FRR/kernel/probe output recorded from a converged twin lab (no Docker)."""

from __future__ import annotations

import copy
import http.server
import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import SEED, TOPOLOGY
from generators.checks import verify
from generators.gen import render_inventory
from generators.lab.expect import expectation_from_plan
from generators.output import write_tree
from generators.readback import frrstate
from generators.twin import plan_twin

RECORDED = json.loads((Path(__file__).parent / "fixtures" / "verify" / "converged.json").read_text())
VIPS = {"apiserver": "10.31.0.80", "traefik": "10.31.0.81"}
NODES = {"10.31.0.218", "10.31.0.161", "10.31.0.132"}


def expectation(tmp_path: Path, inventory: str) -> verify.Expectation:
    out = write_tree(render_inventory(TOPOLOGY / inventory), tmp_path / inventory)
    return expectation_from_plan(plan_twin(out), VIPS, 6443, "kube.dev.ber1.clustername.io")


@pytest.fixture
def exp(tmp_path):
    return expectation(tmp_path, "lab.yml")


def by_name(results):
    return {r.name: r for r in results}


def test_recorded_converged_lab_passes_every_check(exp):
    results = verify.run_checks(RECORDED, exp)
    assert [r.name for r in results if not r.ok] == []
    assert len(results) == 10


def test_expected_next_hops_match_the_seed_router_view(exp):
    """The seed's `show ip route bgp`: each VIP /32 via all three nodes."""
    text = (SEED / "ucg-show-ip-route-bgp.txt").read_text()
    seed: dict[str, set[str]] = {}
    prefix = None
    for line in text.splitlines():
        m = re.match(r"B>\* (\S+)/32", line)
        prefix = m.group(1) if m else prefix
        seed.setdefault(prefix, set()).update(re.findall(r"via (\d+\.\d+\.\d+\.\d+)", line))
    assert {vip: set(h) for vip, h in exp.next_hops.items()} == seed


def test_session_down_is_named(exp):
    obs = copy.deepcopy(RECORDED)
    obs["neighbors"]["10.31.0.161"]["bgpState"] = "Active"
    r = by_name(verify.run_checks(obs, exp))["bgp-sessions-established"]
    assert not r.ok and "10.31.0.161 (cat02) is Active" in r.summary


def test_missing_next_hop_fails_bgp_and_fib(exp):
    obs = copy.deepcopy(RECORDED)
    route = obs["routes"]["10.31.0.81"]["10.31.0.81/32"][0]
    route["nexthops"] = [nh for nh in route["nexthops"] if nh["ip"] != "10.31.0.132"]
    obs["fib"]["10.31.0.81"][0]["nexthops"].pop()
    results = by_name(verify.run_checks(obs, exp))
    assert (
        not results["bgp-next-hops:traefik"].ok
        and "missing ['10.31.0.132 (cat03)']" in results["bgp-next-hops:traefik"].summary
    )
    assert not results["fib:traefik"].ok
    assert results["bgp-next-hops:apiserver"].ok


def test_next_hop_in_bgp_but_not_in_kernel_fails_fib_only(exp):
    obs = copy.deepcopy(RECORDED)
    obs["fib"]["10.31.0.80"] = [{"dst": "10.31.0.80", "gateway": "10.31.0.218", "dev": "eth1"}]
    results = by_name(verify.run_checks(obs, exp))
    assert results["bgp-next-hops:apiserver"].ok and not results["fib:apiserver"].ok


def test_unexpected_prefix_is_reported(exp):
    obs = copy.deepcopy(RECORDED)
    obs["bgp_table"]["routes"]["10.31.0.82/32"] = obs["bgp_table"]["routes"]["10.31.0.81/32"]
    r = by_name(verify.run_checks(obs, exp))["no-unexpected-prefixes"]
    assert not r.ok and "10.31.0.82/32" in r.summary


def test_tls_failure_and_uneven_http_spread(exp):
    obs = copy.deepcopy(RECORDED)
    obs["tls"][1] = {"url": obs["tls"][1]["url"], "ok": False, "error": "SSLCertVerificationError: hostname mismatch"}
    obs["http"] = [{"ok": True, "served_by": "cat01"}] * 12
    results = by_name(verify.run_checks(obs, exp))
    assert not results["apiserver-tls-healthz"].ok and "hostname mismatch" in results["apiserver-tls-healthz"].summary
    assert (
        not results["traefik-http-ecmp"].ok
        and "expected ['cat01', 'cat02', 'cat03']" in results["traefik-http-ecmp"].summary
    )


def test_unadvertised_service_is_named_with_its_cause(tmp_path):
    exp = expectation(tmp_path, "lab-unadvertised.yml")
    assert exp.next_hops["10.31.0.81"] == frozenset() and set(exp.next_hops["10.31.0.80"]) == NODES
    obs = copy.deepcopy(RECORDED)  # what FRR shows for that lab: only the apiserver VIP
    for key in ("routes",):
        obs[key]["10.31.0.81"] = {}
    obs["fib"]["10.31.0.81"] = []
    del obs["bgp_table"]["routes"]["10.31.0.81/32"]
    results = by_name(verify.run_checks(obs, exp))
    adv = results["advertised:traefik"]
    assert not adv.ok
    assert "Service traefik/traefik" in adv.summary and "do not match CiliumBGPAdvertisement lb-services" in adv.summary
    assert results["bgp-next-hops:traefik"].ok  # FRR agrees with the config: nothing
    assert results["advertised:apiserver"].ok and results["fib:apiserver"].ok and results["apiserver-tls-healthz"].ok


def test_kernel_next_hops_reads_single_and_multipath_routes():
    assert frrstate.kernel_next_hops([{"dst": "x", "gateway": "10.0.0.1"}]) == {"10.0.0.1"}
    assert frrstate.kernel_next_hops(RECORDED["fib"]["10.31.0.80"]) == NODES
    assert frrstate.kernel_next_hops([]) == set()


def test_output_formats(exp):
    results = verify.run_checks(RECORDED, exp)
    assert verify.format_results(results).splitlines()[-1] == "10 passed, 0 failed"
    doc = json.loads(verify.results_json(results))
    assert doc["ok"] is True and {c["name"] for c in doc["checks"]} >= {"bgp-sessions-established", "traefik-http-ecmp"}


def _run_probe(*args: str) -> list[dict]:
    """verify's client probe, run on the host against loopback (what `client` runs, by the same argv)."""
    res = subprocess.run([sys.executable, "-c", verify.PROBE, *args], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_http_probe_stops_once_failures_decide_the_verdict_and_runs_every_attempt_otherwise():
    with socket.socket() as s:  # a port nothing listens on: every attempt is refused
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    answers = _run_probe("http", f"127.0.0.1:{closed}", "30", str(verify.HTTP_FAILURES_KEPT))
    assert len(answers) == verify.HTTP_FAILURES_KEPT and not any(a["ok"] for a in answers)

    class Served(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("X-Served-By", "cat01")
            self.end_headers()
            self.wfile.write(b"served-by: cat01\n")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Served)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        answers = _run_probe("http", f"127.0.0.1:{server.server_port}", "7", "3")
    finally:
        server.shutdown()
    assert [a["served_by"] for a in answers] == ["cat01"] * 7
