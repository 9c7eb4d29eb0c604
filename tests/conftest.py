"""Shared fixtures. Tests never read ../shared: the seed's reference configs are copied into tests/fixtures/seed."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "tests" / "fixtures" / "seed"
TOPOLOGY = ROOT / "topology"


@pytest.fixture(scope="session")
def rack_files() -> dict[str, str]:
    from generators.pipeline import render_inventory

    return render_inventory(TOPOLOGY / "rack.yml")


@pytest.fixture(scope="session")
def rack_dir(tmp_path_factory, rack_files) -> Path:
    from generators.output import write_tree

    return write_tree(rack_files, tmp_path_factory.mktemp("render") / "rack")


def lab_image(spec):
    """Tag of a lab image, built when missing: end-to-end tests never skip for want of an image."""
    from generators.lab.engine import Engine
    from generators.lab.images import ensure_image

    return ensure_image(spec, Engine(), log=lambda m: None)


@pytest.fixture(scope="module")
def running_ci_lab():
    """The CI lab (short timers) brought up once for the drill tests, and removed afterwards."""
    from generators.lab.lifecycle import lab_down, lab_up, load_lab

    lab = load_lab(TOPOLOGY / "lab-ci.yml")
    try:
        lab_up(lab, log=lambda m: None)
        yield lab
    finally:
        lab_down(lab.name, log=lambda m: None)
