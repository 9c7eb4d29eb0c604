"""Stage 3: render the model into files, with the Jinja2 templates in ``configs/``.

Pure: returns ``{relative path: text}`` and writes nothing. Templates are shared by rack and lab;
only lab inventories add the containerlab topology.
"""
from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from typing import Any

import jinja2
import yaml

from .model import Model

# The Jinja templates: the top-level configs/ of the checkout, shipped as the package `generators.configs`.
CONFIGS = importlib.resources.files("generators.configs")

# The seed's platform chart is itself a Helm template: this expression must reach the file verbatim.
HELM_BASE_DOMAIN = "{{ .Values.baseClusterDomain }}"


class _IndentedDumper(yaml.SafeDumper):
    """Indent block sequences under their key, as the seed's files do."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:  # noqa: ARG002
        return super().increase_indent(flow, False)


def _to_yaml(value: Any, indent: int) -> str:
    text = yaml.dump(value, Dumper=_IndentedDumper, default_flow_style=False, sort_keys=False, width=1000)
    pad = " " * indent
    return "\n".join(pad + line for line in text.rstrip("\n").split("\n"))


def _template_source(name: str) -> str:
    return CONFIGS.joinpath(name).read_text(encoding="utf-8")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_template_source),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["to_yaml"] = _to_yaml
    return env


@dataclass(frozen=True)
class K3sNodeView:
    """What one node's k3s config needs, derived from the model (not computed in the template)."""

    name: str
    address: str
    first: bool
    server_url: str


def _k3s_views(model: Model) -> list[K3sNodeView]:
    first = model.first_server
    url = f"https://{first.address}:{model.apiserver.port}"
    return [K3sNodeView(n.name, str(n.address), n == first, url) for n in model.nodes]


def _context(model: Model) -> dict[str, Any]:
    return {
        "site": model.name,
        "gateway": model.gateway,
        "nodes": model.nodes,
        "bgp": model.bgp,
        "k3s": model.k3s,
        "tls_sans": model.tls_sans,
        "pool": model.pool,
        "pool_name": model.pool_name,
        "pool_allow_first_last": model.pool_allow_first_last,
        "api": model.apiserver,
        "traefik": model.traefik,
        "platform": model.platform,
        "cilium": model.cilium,
        "cilium_version": model.cilium_version,
        "helm_base_domain": HELM_BASE_DOMAIN,
    }


# relative output path -> template, for files rendered once per inventory
SINGLE_FILES = {
    "frr/frr.conf": "frr/frr.conf.j2",
    "frr/daemons": "frr/daemons.j2",
    "cilium/values.yaml": "cilium/values.yaml.j2",
    "cilium/bgp.yaml": "cilium/bgp.yaml.j2",
    "cilium/kube-apiserver-bgp.yaml": "cilium/kube-apiserver-bgp.yaml.j2",
    "platform/values.yaml": "platform/values.yaml.j2",
    "apps/httproute-foobar.yaml": "apps/httproute-foobar.yaml.j2",
}


def render_files(model: Model, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Every rack file for ``model``; ``extra`` adds files rendered by later stages (the lab topology)."""
    env = _environment()
    ctx = _context(model)
    files = {out: env.get_template(tpl).render(ctx) for out, tpl in SINGLE_FILES.items()}
    k3s_tpl = env.get_template("k3s/config.yaml.j2")
    for view in _k3s_views(model):
        files[f"k3s/{view.name}/config.yaml"] = k3s_tpl.render(ctx, node=view)
    files.update(extra or {})
    return dict(sorted(files.items()))
