"""The containerlab topology for a lab inventory: nodes from each kind, links on the switch bridge."""
from __future__ import annotations

import hashlib

import yaml

from ..model import Model
from .images import image_tag
from .kinds import ClientKind, GatewayKind, NodeKind, cluster_kind
from .kinds.client import NAME as CLIENT
from .kinds.gateway import NAME as GATEWAY

CLAB_FILE = "lab.clab.yml"


def bridge_port(lab_name: str, node: str) -> str:
    """Host-side name of ``node``'s port on the switch bridge: unique per lab, at most 15 characters.

    Host interface names are global, so two labs on one host must not both call theirs ``ucg-eth1``.
    """
    tag = hashlib.sha256(lab_name.encode()).hexdigest()[:4]
    return f"{node[:10]}-{tag}"


def lab_kinds(model: Model) -> list[NodeKind]:
    assert model.lab is not None
    return [GatewayKind(), cluster_kind(model.lab.fidelity), ClientKind()]


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
    head = (f"# containerlab topology for lab {model.lab.name!r}, rendered from inventory {model.name!r}.\n"  # type: ignore[union-attr]
            f"# `invoke lab-up` deploys it; the host bridge {model.lab.bridge!r} must exist first.\n")  # type: ignore[union-attr]
    body = yaml.safe_dump(clab_topology(model), sort_keys=False, default_flow_style=False, width=1000)
    return {CLAB_FILE: head + body}
