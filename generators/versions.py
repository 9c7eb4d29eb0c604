"""The pinned versions of the tools the lab builds and runs (one owner; everything else imports them).

Cilium's and Kubernetes' versions are the inventory's (``versions.cilium``, ``versions.k3s``); the
Go modules that build them pin the same versions in their ``go.mod``.
"""
from __future__ import annotations

import re

CONTAINERLAB_VERSION = "0.79.0"
CONTAINERLAB_MODULE = "github.com/srl-labs/containerlab"
# The twin's speakers; Cilium 1.19.3's GoBGP fork is based on it (docs/FACTS.md#cilium).
GOBGP_VERSION = "3.37.0"
GOBGP_MODULE = "github.com/osrg/gobgp/v3"


_VERSION = re.compile(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?")
_STRICT_VERSION = re.compile(r"^(\d{1,3})(?:\.(\d{1,3}))?(?:\.(\d{1,3}))?$")


def version_tuple(text: str, strict: bool = False) -> tuple[int, int, int] | None:
    """The one parser of dotted versions: ``"8.4.4_git"`` -> ``(8, 4, 4)``; ``"v3.26"`` -> ``(3, 26, 0)``.

    None when the text does not start with a version. ``strict``: the whole text must be a version
    (``v9.1.2``, ``8.1``, ``10``), nothing after it.
    """
    text = text.strip()
    match = _STRICT_VERSION.match(text.removeprefix("v")) if strict else _VERSION.match(text.lstrip("vV"))
    if not match:
        return None
    major, minor, patch = (int(g) if g else 0 for g in match.groups())
    return major, minor, patch
