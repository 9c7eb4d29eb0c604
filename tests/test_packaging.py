"""The package installs: `pip install .` (not editable) into a fresh venv, then `gen` outside the checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT, TOPOLOGY

pytestmark = pytest.mark.slow


def test_pyproject_lists_every_package_of_the_tree():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    tree = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "generators").rglob("__init__.py")}
    assert listed == tree | {"generators.configs", "generators.k3s_images"}


def test_wheel_install_renders_the_seed_from_another_directory(tmp_path: Path, rack_files: dict[str, str]):
    src = tmp_path / "src"  # a copy: setuptools builds in the source tree, and the checkout stays untouched
    src.mkdir()
    for part in ("pyproject.toml", "README.md", "generators", "configs", "k3s_images"):
        copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copy2
        copy(
            ROOT / part,
            src / part,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}),
        )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    # --no-deps: the dependencies are the ones this interpreter already has; what is tested is our package
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check", str(src)],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    where = subprocess.run(
        [str(py), "-c", "import generators; print(generators.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(venv)), f"the venv's own install must be used, got {where}"
    out = tmp_path / "rendered"
    res = subprocess.run(
        [str(venv / "bin" / "k3s-bgp-lab"), "gen", "--inventory", str(TOPOLOGY / "rack.yml"), "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    written = {p.relative_to(out).as_posix(): p.read_text() for p in out.rglob("*") if p.is_file()}
    assert written == rack_files
