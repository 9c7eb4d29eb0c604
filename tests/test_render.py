"""Rendering: lab equals rack, determinism, MANIFEST, atomic output, no empty values."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from conftest import TOPOLOGY
from generators.gen import generate, render_inventory
from generators.output import OutputError, write_tree

LAB_ONLY = {"lab.clab.yml", "MANIFEST.json"}


@pytest.mark.parametrize("lab", ["lab.yml", "lab-ci.yml"])
def test_lab_renders_rack_files_byte_identical(rack_files, lab):
    lab_files = render_inventory(TOPOLOGY / lab)
    rack_only = {k: v for k, v in rack_files.items() if k not in LAB_ONLY}
    if lab == "lab.yml":
        assert {k: lab_files[k] for k in rack_only} == rack_only
    else:  # the CI variant changes timers only: everything but the peer config's timers is identical
        differing = sorted(k for k in rack_only if lab_files[k] != rack_only[k])
        assert differing == ["cilium/bgp.yaml"]
    assert "lab.clab.yml" in lab_files and "lab.clab.yml" not in rack_files


def test_rendering_is_deterministic(rack_files):
    assert render_inventory(TOPOLOGY / "rack.yml") == rack_files


def test_manifest_lists_every_file_with_its_sha256(rack_files):
    manifest = json.loads(rack_files["MANIFEST.json"])
    files = {k: v for k, v in rack_files.items() if k != "MANIFEST.json"}
    assert set(manifest["files"]) == set(files)
    for rel, text in files.items():
        assert manifest["files"][rel]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert len(manifest["inventory"]["sha256"]) == 64
    assert manifest["tool"] == "k3s-bgp-lab" and manifest["tool_version"]


def test_inventory_digest_covers_included_files(tmp_path):
    rack = (TOPOLOGY / "rack.yml").read_text()
    (tmp_path / "rack.yml").write_text(rack)
    (tmp_path / "lab.yml").write_text("include: rack.yml\nlab: {name: t}\n")
    before = json.loads(render_inventory(tmp_path / "lab.yml")["MANIFEST.json"])["inventory"]["sha256"]
    (tmp_path / "rack.yml").write_text(rack + "# edited\n")
    after = json.loads(render_inventory(tmp_path / "lab.yml")["MANIFEST.json"])["inventory"]["sha256"]
    assert before != after


@pytest.mark.parametrize("inventory", ["rack.yml", "lab.yml", "lab-ci.yml", "lab-unadvertised.yml"])
def test_every_yaml_parses_and_no_value_is_empty(inventory):
    for rel, text in render_inventory(TOPOLOGY / inventory).items():
        assert "None" not in text, rel
        if rel.endswith((".yaml", ".yml")):
            for doc in yaml.safe_load_all(text):
                _assert_no_empty(doc, rel, "")


def _assert_no_empty(value, rel, path):
    assert value is not None and value != "", f"{rel}: empty value at {path or '<root>'}"
    if isinstance(value, dict):
        for k, v in value.items():
            if v == {} and k == "tcp_health_check":
                continue  # the seed's `tcp_health_check: {}` is Envoy's "connect-only" probe
            _assert_no_empty(v, rel, f"{path}.{k}")
    elif isinstance(value, list):
        assert value, f"{rel}: empty list at {path}"
        for i, v in enumerate(value):
            _assert_no_empty(v, rel, f"{path}[{i}]")


def test_gen_writes_layout_and_is_idempotent(tmp_path):
    out = tmp_path / "out"
    generate(TOPOLOGY / "rack.yml", out)
    first = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    generate(TOPOLOGY / "rack.yml", out)
    second = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert first == second and "frr/frr.conf" in first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_failed_write_leaves_previous_output_untouched(tmp_path, monkeypatch):
    out = tmp_path / "out"
    generate(TOPOLOGY / "rack.yml", out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    calls = {"n": 0}
    real = Path.write_text

    def failing(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "write_text", failing)
    with pytest.raises(OSError):
        write_tree({"a.txt": "1", "b.txt": "2", "c.txt": "3", "MANIFEST.json": "{}"}, out)
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_refuses_to_replace_a_directory_it_did_not_write(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not written by `gen`"):
        generate(TOPOLOGY / "rack.yml", foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_static_cluster_fallback_inlines_endpoints(tmp_path):
    (tmp_path / "rack.yml").write_text((TOPOLOGY / "rack.yml").read_text())
    (tmp_path / "static.yml").write_text("include: rack.yml\nvips:\n  apiserver:\n    cluster_type: static\n")
    files = render_inventory(tmp_path / "static.yml")
    ccec = list(yaml.safe_load_all(files["cilium/kube-apiserver-bgp.yaml"]))[2]
    cluster = ccec["spec"]["resources"][1]
    assert cluster["type"] == "STATIC"
    addrs = [
        e["endpoint"]["address"]["socket_address"] for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ]
    assert addrs == [{"address": ip, "port_value": 6443} for ip in ("10.31.0.218", "10.31.0.161", "10.31.0.132")]
    assert cluster["load_assignment"]["cluster_name"] == "kube-system/kube-apiserver-bgp"
