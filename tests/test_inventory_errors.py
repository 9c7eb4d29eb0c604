"""Bad inventories: each names the file, the field path, why, and nothing is written."""

from __future__ import annotations

import pytest

from conftest import TOPOLOGY
from generators.cli import EXIT_BAD_INPUT, cmd_gen
from generators.errors import InventoryError
from generators.model import load_model

RACK = str(TOPOLOGY / "rack.yml")

# (id, YAML overriding the rack inventory, expected field path, expected words in `why`)
CASES = [
    ("unknown-top-key", "colour: red\n", "colour", "unknown key"),
    ("unknown-nested-key", "bgp:\n  timer: {hold: 15}\n", "bgp.timer", "unknown key"),
    ("missing-required", "vips:\n  apiserver: null\n", "vips.apiserver.dns_name", "required field is missing"),
    ("wrong-type-asn", "bgp:\n  cluster_asn: '65000'\n", "bgp.cluster_asn", "expected an integer"),
    (
        "wrong-type-bool",
        "bgp:\n  graceful_restart: {enabled: 'yes'}\n",
        "bgp.graceful_restart.enabled",
        "expected true or false",
    ),
    ("bad-ip", "gateway:\n  address: 10.31.0.300\n", "gateway.address", "not an IPv4 address"),
    ("bad-cidr", "lb_pool:\n  cidr: 10.31.0.81/28\n", "lb_pool.cidr", "not an IPv4 network"),
    ("vip-outside-pool", "vips:\n  traefik: {address: 10.31.0.120}\n", "vips.traefik.address", "outside the LB pool"),
    ("vip-twice", "vips:\n  traefik: {address: 10.31.0.80}\n", "vips.traefik.address", "pinned twice"),
    (
        "vip-pool-first-reserved",
        "lb_pool:\n  allow_first_last_ips: false\n",
        "vips.apiserver.address",
        "first or last address",
    ),
    (
        "vip-pool-last-reserved",
        "lb_pool:\n  allow_first_last_ips: false\nvips:\n  traefik: {address: 10.31.0.95}\n",
        "vips.traefik.address",
        "first or last address",
    ),
    (
        "duplicate-node-name",
        "nodes:\n  - {name: cat01, address: 10.31.0.218}\n  - {name: cat01, address: 10.31.0.161}\n",
        "nodes[1].name",
        "duplicate node name",
    ),
    (
        "duplicate-node-ip",
        "nodes:\n  - {name: cat01, address: 10.31.0.218}\n  - {name: cat02, address: 10.31.0.218}\n",
        "nodes[1].address",
        "duplicate node address",
    ),
    (
        "node-outside-subnet",
        "nodes:\n  - {name: cat01, address: 10.31.1.218}\n",
        "nodes[0].address",
        "not in the node subnet",
    ),
    ("gateway-outside-subnet", "gateway:\n  address: 10.42.0.1\n", "gateway.address", "not in the node subnet"),
    ("asn-zero", "bgp:\n  cluster_asn: 0\n", "bgp.cluster_asn", "ASN out of range"),
    ("asn-too-big", "gateway:\n  asn: 4294967296\n", "gateway.asn", "ASN out of range"),
    ("asn-trans", "gateway:\n  asn: 23456\n", "gateway.asn", "AS_TRANS"),
    ("hold-below-3", "bgp:\n  timers: {hold: 2, keepalive: 1}\n", "bgp.timers.hold", "out of range 3"),
    (
        "keepalive-over-third",
        "bgp:\n  timers: {hold: 15, keepalive: 6}\n",
        "bgp.timers.keepalive",
        "more than a third of hold",
    ),
    (
        "duration-ms",
        "vips:\n  apiserver:\n    health_check: {interval_jitter: 100ms}\n",
        "vips.apiserver.health_check.interval_jitter",
        "Duration must be seconds",
    ),
    (
        "restart-time-range",
        "bgp:\n  graceful_restart: {restart_time: 5000}\n",
        "bgp.graceful_restart.restart_time",
        "out of range 1..4095",
    ),
    (
        "bad-etp",
        "vips:\n  apiserver: {external_traffic_policy: local}\n",
        "vips.apiserver.external_traffic_policy",
        "must be one of",
    ),
    ("bad-frr-version", "gateway:\n  frr_version: banana\n", "gateway.frr_version", "not a valid FRR version"),
    ("node-in-pool", "nodes:\n  - {name: cat01, address: 10.31.0.85}\n", "nodes[0].address", "inside the LB pool"),
    ("empty-nodes", "nodes: []\n", "nodes", "non-empty list"),
    ("fidelity-full-not-built", "lab:\n  fidelity: full\n", "lab.fidelity", "not built yet"),
    ("fidelity-unknown", "lab:\n  fidelity: emulated\n", "lab.fidelity", "must be one of cilium, twin"),
    (
        "bad-selector",
        "bgp:\n  service_selector: {matchExpressions: [{key: a, operator: Has}]}\n",
        "bgp.service_selector",
        "unknown operator",
    ),
]


@pytest.mark.parametrize("case,override,path,why", CASES, ids=[c[0] for c in CASES])
def test_bad_inventory_is_rejected_with_path_and_nothing_written(tmp_path, case, override, path, why):
    inv = tmp_path / "bad.yml"
    inv.write_text(f"include: {RACK}\n{override}")
    with pytest.raises(InventoryError) as err:
        load_model(inv)
    problems = err.value.problems
    hits = [p for p in problems if p.path == path]
    assert hits, f"expected a problem at {path}, got {[p.path for p in problems]}"
    assert why in hits[0].why, hits[0].render()
    # the field is named in the file that set it: the override, unless only the pool setting changed
    assert hits[0].file == (RACK if case == "vip-pool-first-reserved" else str(inv))
    assert hits[0].fix
    out = tmp_path / "out"
    assert cmd_gen(str(inv), str(out)) == EXIT_BAD_INPUT
    assert not out.exists()


def test_error_names_the_included_file_when_the_mistake_is_there(tmp_path):
    (tmp_path / "rack.yml").write_text((TOPOLOGY / "rack.yml").read_text().replace("asn: 64512", "asn: 0"))
    (tmp_path / "lab.yml").write_text("include: rack.yml\nlab: {name: t}\n")
    with pytest.raises(InventoryError) as err:
        load_model(tmp_path / "lab.yml")
    (problem,) = err.value.problems
    assert problem.path == "gateway.asn" and problem.file == str(tmp_path / "rack.yml")


def test_unknown_key_suggests_the_close_one(tmp_path):
    inv = tmp_path / "bad.yml"
    inv.write_text(f"include: {RACK}\nbgp:\n  cluster_asm: 65000\n")
    with pytest.raises(InventoryError) as err:
        load_model(inv)
    assert "did you mean `cluster_asn`" in err.value.problems[0].fix


@pytest.mark.parametrize(
    "text,why",
    [
        ("nodes: [", "not valid YAML"),
        ("- a\n- b\n", "not a mapping"),
        ("include: nowhere.yml\n", "file not found"),
    ],
)
def test_unreadable_inventory(tmp_path, text, why):
    inv = tmp_path / "bad.yml"
    inv.write_text(text)
    with pytest.raises(InventoryError, match=why):
        load_model(inv)


def test_include_cycle(tmp_path):
    (tmp_path / "a.yml").write_text("include: b.yml\n")
    (tmp_path / "b.yml").write_text("include: a.yml\n")
    with pytest.raises(InventoryError, match="include cycle"):
        load_model(tmp_path / "a.yml")
