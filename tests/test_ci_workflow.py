"""The GitHub workflow for the project's users: valid against GitHub's workflow schema, and it runs README's commands.

The schema is the one check-jsonschema ships (``--builtin-schema vendor.github-workflows``): offline.
"""
from __future__ import annotations

import subprocess
import sys

import yaml

from conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "lab.yml"


def test_workflow_is_valid_against_githubs_schema():
    res = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                          str(WORKFLOW)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "run-on:"))
    res = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                          str(broken)], capture_output=True, text=True)
    assert res.returncode == 1, res.stdout + res.stderr


def test_workflow_runs_the_readme_commands_and_keeps_the_reports():
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["test"]["steps"]
    runs = [s.get("run", "") for s in steps]
    readme = (ROOT / "README.md").read_text()
    assert "pip install -e '.[dev]'" in readme and "invoke test" in readme
    assert any("pip install -e '.[dev]'" in r for r in runs)
    assert any(r.rstrip().endswith("invoke test") for r in runs)
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["with"]["path"].startswith("build/reports")
