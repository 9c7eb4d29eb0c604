"""``invoke gen``: every file an inventory renders, the rack's and, for a lab inventory, the lab's.

The composition root of the rendering stages: ``generators.pipeline`` renders the rack's files and
``generators.lab.topology`` adds the containerlab topology of a lab inventory.
"""
from __future__ import annotations

from pathlib import Path

from .lab.topology import render_lab_files
from .model import Model, load_model
from .output import write_tree


def render_inventory(path: str | Path) -> dict[str, str]:
    """Every file of the layout for the inventory at ``path`` (``lab.clab.yml`` too for a lab); nothing is written."""
    return render_lab_files(load_model(path))


def generate(path: str | Path, out_dir: str | Path) -> tuple[Model, Path]:
    """Validate, render and write atomically. On a bad inventory, raises before touching ``out_dir``."""
    model = load_model(path)
    return model, write_tree(render_lab_files(model), out_dir)
