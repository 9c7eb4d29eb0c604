"""Run every preflight check stage on a rendered directory."""
from __future__ import annotations

from pathlib import Path

from generators.readback.rendered import Rendered, load_rendered

from . import checks_addresses, checks_bgp, checks_envoy, checks_gateway, checks_input, checks_k3s, checks_timers
from .context import build_context
from .findings import Report

_STAGES = (checks_input, checks_envoy, checks_bgp, checks_gateway, checks_addresses, checks_timers, checks_k3s)


def run(dir_or_rendered: str | Path | Rendered, *, frr_version: str | None = None, source: str | None = None) -> Report:
    """Check a rendered directory (or an already loaded :class:`Rendered`) and return every finding.

    ``frr_version`` is the gateway's FRR version (e.g. ``"8.4.4"``); without it a ``frr version``
    line in frr/frr.conf is used, and when neither exists N-bit support is assumed (and said).
    Raises :class:`generators.readback.rendered.RenderedError` when a file cannot be read at all.
    """
    rendered = dir_or_rendered if isinstance(dir_or_rendered, Rendered) else load_rendered(dir_or_rendered)
    ctx = build_context(rendered, frr_version)
    for stage in _STAGES:
        stage.run(ctx)
    return Report(
        source=source if source is not None else str(rendered.root),
        files=sorted(rendered.files),
        findings=sorted(set(ctx.findings)),
        frr_version=ctx.frr_version,
    )
