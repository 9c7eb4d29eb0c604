"""The containerlab topology for a lab inventory: nodes from each kind, links on the switch bridge.

``render_lab_files`` is what a lab inventory renders: the rack's files (``generators.pipeline``) plus
``lab.clab.yml``.
"""
from __future__ import annotations

import yaml

from ..model import Model
from ..pipeline import render_model
from .images import image_tag
from .kinds import lab_kinds
from .kinds.client import NAME as CLIENT
from .kinds.gateway import NAME as GATEWAY
from .names import bridge_port

CLAB_FILE = "lab.clab.yml"


def clab_topology(model: Model) -> dict:
    lab = model.lab
    assert lab is not None
    nodes: dict[str, dict] = {}
    for kind in lab_kinds(model):
        nodes.update(kind.clab_nodes(model, image_tag(kind.image_spec(model))))
    nodes[lab.bridge] = {"kind": "bridge"}
    links = [{"endpoints": [f"{n}:eth1", f"{lab.bridge}:{bridge_port(lab.name, n)}"]}
             for n in [GATEWAY, *(node.name for node in model.nodes)]]
    links.append({"endpoints": [f"{GATEWAY}:eth2", f"{CLIENT}:eth1"]})
    return {"name": lab.name, "topology": {"nodes": nodes, "links": links}}


def render_clab(model: Model) -> dict[str, str]:
    lab = model.lab
    assert lab is not None
    head = (f"# containerlab topology for lab {lab.name!r}, rendered from inventory {model.name!r}.\n"
            f"# `invoke lab-up` deploys it; the host bridge {lab.bridge!r} must exist first.\n")
    body = yaml.safe_dump(clab_topology(model), sort_keys=False, default_flow_style=False, width=1000)
    return {CLAB_FILE: head + body}


def render_lab_files(model: Model) -> dict[str, str]:
    """Every file of a lab inventory: the rack's, plus the containerlab topology."""
    return render_model(model, extra=render_clab(model) if model.lab is not None else {})
