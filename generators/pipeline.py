"""The rack's pipeline in one place: inventory -> model -> rendered files -> written directory.

Later stages add their own files through ``extra`` (the lab stage adds ``lab.clab.yml``, see
``generators.lab.topology.render_lab_files``); this module never imports them.
"""
from __future__ import annotations

from pathlib import Path

from .model import Model, load_model
from .output import MANIFEST, manifest, write_tree
from .render import render_files


def render_model(model: Model, extra: dict[str, str] | None = None) -> dict[str, str]:
    files = render_files(model, extra=extra)
    files[MANIFEST] = manifest(files, model.name, model.digest)
    return files


def render_inventory(path: str | Path) -> dict[str, str]:
    """Every rack file of the layout for the inventory at ``path``; nothing is written."""
    return render_model(load_model(path))


def generate(path: str | Path, out_dir: str | Path) -> tuple[Model, Path]:
    """Validate, render and write atomically. On a bad inventory, raises before touching ``out_dir``."""
    model = load_model(path)
    return model, write_tree(render_model(model), out_dir)
