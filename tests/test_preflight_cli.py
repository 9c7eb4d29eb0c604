"""The preflight command line: exit codes, human output, the JSON report, --inventory."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from test_preflight_seed import seed_dir

from conftest import ROOT, TOPOLOGY
from generators.preflight import CHECKS
from generators.preflight.cli import main
from generators.preflight.findings import JSON_SCHEMA_ID


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture()
def seed(tmp_path, rack_files):
    return seed_dir(tmp_path, rack_files)


def test_seed_exits_0_and_ends_with_counts(seed):
    code, out, _ = _run(["--dir", str(seed.root)])
    assert code == 0
    assert out.rstrip().splitlines()[-1] == f"0 errors, 1 warning in 9 files ({seed.root})"
    assert out.splitlines()[0] == "cilium/bgp.yaml"  # grouped by file


def test_strict_turns_the_seed_warning_into_exit_1(seed):
    assert _run(["--dir", str(seed.root), "--strict"])[0] == 1


def test_strict_with_an_old_gateway_has_nothing_to_warn_about(seed):
    code, out, _ = _run(["--dir", str(seed.root), "--strict", "--frr-version", "8.1"])
    assert code == 0 and "0 errors, 0 warnings" in out


def test_an_error_exits_1(seed):
    seed.frr_sub(" no bgp ebgp-requires-policy\n", "")
    code, out, _ = _run(["--dir", str(seed.root)])
    assert code == 1
    assert "frr/frr.conf\n  error   GW-EBGP-POLICY  router bgp 64512  line 1: router bgp 64512" in out
    assert "1 error, 1 warning" in out


def test_json_is_parseable_sorted_and_stable(seed):
    seed.edit_k3s(lambda c: c.pop("disable-network-policy"))
    code, out, _ = _run(["--dir", str(seed.root), "--json"])
    again = _run(["--dir", str(seed.root), "--json"])[1]
    assert code == 0 and out == again
    report = json.loads(out)
    assert report["schema"] == JSON_SCHEMA_ID
    assert set(report) == {"schema", "source", "files", "frr_version", "summary", "findings"}
    assert report["summary"] == {"errors": 0, "warnings": 4}
    assert report["frr_version"] == {"value": "", "source": "unknown"}
    assert report["files"] == sorted(report["files"]) and "frr/frr.conf" in report["files"]
    keys = [(f["file"], f["document"], f["path"], f["id"]) for f in report["findings"]]
    assert keys == sorted(keys)
    for finding in report["findings"]:
        assert set(finding) == {"id", "severity", "file", "document", "path", "message", "fix"}
        assert finding["severity"] == CHECKS[finding["id"]].severity


def test_inventory_renders_and_checks_the_same_files(seed):
    code, out, _ = _run(["--inventory", str(TOPOLOGY / "rack.yml"), "--json"])
    by_dir = json.loads(_run(["--dir", str(seed.root), "--json"])[1])
    by_inventory = json.loads(out)
    assert code == 0
    assert by_inventory["findings"] == by_dir["findings"]
    assert by_inventory["source"] == str(TOPOLOGY / "rack.yml")


def test_bad_inventory_exits_2_with_the_inventory_errors(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("name: broken\nnodes: 5\n")
    code, out, err = _run(["--inventory", str(bad)])
    assert code == 2 and out == ""
    assert err.startswith("invalid inventory") and f"{bad}: nodes = 5" in err


@pytest.mark.parametrize("argv, message", [
    ([], "one of the arguments --dir --inventory is required"),
    (["--dir", "a", "--inventory", "b"], "not allowed with argument"),
    (["--dir", "/nonexistent/rendered"], "is not a directory"),
    (["--inventory", "/nonexistent/rack.yml"], "does not exist"),
    (["--dir", ".", "--bogus"], "unrecognized arguments"),
])
def test_usage_errors_exit_2(argv, message):
    code, out, err = _run(argv)
    assert code == 2 and out == "" and message in err


def test_a_directory_without_any_layout_file_exits_2(tmp_path):
    (tmp_path / "notes.txt").write_text("not a rendered directory\n")
    code, out, err = _run(["--dir", str(tmp_path)])
    assert code == 2 and out == "" and "holds no file of the rendered layout" in err


def test_unreadable_yaml_exits_2_naming_the_file(seed):
    (seed.root / "cilium" / "bgp.yaml").write_text("kind: [unclosed\n")
    code, out, err = _run(["--dir", str(seed.root)])
    assert code == 2 and out == ""
    assert "cilium/bgp.yaml: not valid YAML" in err


def test_module_entry_point(seed):
    result = subprocess.run([sys.executable, "-m", "generators.preflight", "--dir", str(seed.root), "--json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["summary"] == {"errors": 0, "warnings": 1}


def test_the_negative_lab_inventory_fails_on_exactly_its_mistake():
    """lab-unadvertised.yml narrows the Advertisement to the apiserver: Traefik's VIP never reaches the wire."""
    code, out, _ = _run(["--inventory", str(TOPOLOGY / "lab-unadvertised.yml"), "--json"])
    report = json.loads(out)
    assert code == 1
    errors = [(f["id"], f["file"], f["document"]) for f in report["findings"] if f["severity"] == "error"]
    assert errors == [("BGP-SERVICE-NOT-ADVERTISED", "platform/values.yaml", "Service/traefik/traefik")]


def test_docs_list_every_check_with_its_severity_and_example():
    doc = (ROOT / "docs" / "PREFLIGHT.md").read_text()
    for check in CHECKS.values():
        row = f"| `{check.id}` | {check.severity} | {check.title} | {check.example} |"
        assert row in doc, f"docs/PREFLIGHT.md lacks or misstates {check.id}"
    assert "docs/PREFLIGHT.md" in (ROOT / "README.md").read_text()  # README points to the reference
