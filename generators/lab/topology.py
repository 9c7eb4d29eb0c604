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
from .state import LABEL_LAB, LABEL_OWNER

CLAB_FILE = "lab.clab.yml"


def clab_topology(model: Model, owner_id: str | None = None) -> dict:
    """The topology; ``owner_id`` (lab-up's) labels every container with the lab and its owner.

    No node has a management interface (``network-mode: none``): everything the lab does goes through
    ``docker exec`` and the lab's own links, so containerlab creates no Docker network and no iptables rule
    for one (``mgmt.skip-when-unused``). The switch is a host bridge that lab-up creates; each node's
    ``eth1`` is a veth whose host end (``host:<port>``) lab-up attaches to it after deploy.
    """
    lab = model.lab
    assert lab is not None
    nodes: dict[str, dict] = {}
    for kind in lab_kinds(model):
        nodes.update(kind.clab_nodes(model, image_tag(kind.image_spec(model))))
    links = [{"endpoints": [f"{n}:eth1", f"host:{bridge_port(lab.name, n)}"]} for n in switch_nodes(model)]
    links.append({"endpoints": [f"{GATEWAY}:eth2", f"{CLIENT}:eth1"]})
    defaults: dict = {"network-mode": "none"}
    if owner_id is not None:
        defaults["labels"] = {LABEL_LAB: lab.name, LABEL_OWNER: owner_id}
    return {"name": lab.name, "mgmt": {"skip-when-unused": True},
            "topology": {"defaults": defaults, "nodes": nodes, "links": links}}


def switch_nodes(model: Model) -> list[str]:
    """The nodes with a port on the switch bridge: the gateway and every cluster node."""
    return [GATEWAY, *(node.name for node in model.nodes)]


def switch_ports(model: Model) -> dict[str, str]:
    """Host-side port name -> node, on the switch bridge."""
    assert model.lab is not None
    return {bridge_port(model.lab.name, n): n for n in switch_nodes(model)}


def render_clab(model: Model, owner_id: str | None = None) -> dict[str, str]:
    lab = model.lab
    assert lab is not None
    head = (f"# containerlab topology for lab {lab.name!r}, rendered from inventory {model.name!r}.\n"
            f"# `invoke lab-up` deploys it and attaches the host ends of the eth1 links to bridge {lab.bridge!r}.\n")
    body = yaml.safe_dump(clab_topology(model, owner_id), sort_keys=False, default_flow_style=False, width=1000)
    return {CLAB_FILE: head + body}


def render_lab_files(model: Model, owner_id: str | None = None) -> dict[str, str]:
    """Every file of a lab inventory: the rack's, plus the containerlab topology (with lab-up's owner labels)."""
    return render_model(model, extra=render_clab(model, owner_id) if model.lab is not None else {})
