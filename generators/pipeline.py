"""The whole pipeline in one place: inventory -> model -> rendered files -> written directory."""
from __future__ import annotations

from pathlib import Path

from .model import Model, load_model
from .output import MANIFEST, manifest, write_tree
from .render import render_files


def _lab_files(model: Model) -> dict[str, str]:
    if model.lab is None:
        return {}
    from .lab.topology import render_clab  # the lab stage, only for lab inventories

    return render_clab(model)


def render_model(model: Model) -> dict[str, str]:
    files = render_files(model, extra=_lab_files(model))
    files[MANIFEST] = manifest(files, model.name, model.digest)
    return files


def render_inventory(path: str | Path) -> dict[str, str]:
    """Every file of the layout for the inventory at ``path``; nothing is written."""
    return render_model(load_model(path))


def generate(path: str | Path, out_dir: str | Path) -> tuple[Model, Path]:
    """Validate, render and write atomically. On a bad inventory, raises before touching ``out_dir``."""
    model = load_model(path)
    return model, write_tree(render_model(model), out_dir)
