"""Read a directory of rendered configs (ours, or a user's hand-written files in the same layout).

Only parsing lives here: no checks, no model. Every YAML document keeps the file it came from
and its index in that file, so that checks can point at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from generators.errors import InputError

FRR_CONF = "frr/frr.conf"
FRR_DAEMONS = "frr/daemons"
K3S_GLOB = "k3s/*/config.yaml"
CILIUM_VALUES = "cilium/values.yaml"
CILIUM_BGP = "cilium/bgp.yaml"
APISERVER_BGP = "cilium/kube-apiserver-bgp.yaml"
PLATFORM_VALUES = "platform/values.yaml"
APPS_DIR = "apps"
CLAB_TOPOLOGY = "lab.clab.yml"
MANIFEST = "MANIFEST.json"


class RenderedError(InputError, ValueError):
    """A file in the rendered directory that cannot be read at all."""


@dataclass(frozen=True)
class Doc:
    """One YAML document of a rendered file."""

    file: str  # path relative to the rendered directory
    index: int  # position of the document in its file, from 0
    body: dict

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str((self.body.get("metadata") or {}).get("namespace", "") or "")

    @property
    def labels(self) -> dict:
        return dict((self.body.get("metadata") or {}).get("labels") or {})

    @property
    def annotations(self) -> dict:
        return {str(k): str(v) for k, v in ((self.body.get("metadata") or {}).get("annotations") or {}).items()}

    @property
    def spec(self) -> dict:
        return dict(self.body.get("spec") or {})

    @property
    def ref(self) -> str:
        """``Kind/namespace/name`` (namespace left out for cluster-scoped documents)."""
        return "/".join(p for p in (self.kind, self.namespace, self.name) if p)


@dataclass
class Rendered:
    root: Path
    docs: list[Doc] = field(default_factory=list)  # Kubernetes documents, every file
    k3s: dict[str, dict] = field(default_factory=dict)  # node name -> k3s config
    cilium_values: dict = field(default_factory=dict)
    platform_values: dict = field(default_factory=dict)
    frr_conf: str = ""
    files: list[str] = field(default_factory=list)  # every file read, relative

    def of_kind(self, kind: str) -> list[Doc]:
        return [d for d in self.docs if d.kind == kind]

    def get(self, kind: str, name: str, namespace: str = "") -> Doc | None:
        for d in self.docs:
            if d.kind == kind and d.name == name and d.namespace == namespace:
                return d
        return None


# The rack's files a directory in the gen layout must hold to stand for a rendering (a user's own configs).
RACK_FILES_REQUIRED = (FRR_CONF, CILIUM_VALUES, CILIUM_BGP, APISERVER_BGP, PLATFORM_VALUES)


def rack_files(root: Path, flag: str) -> dict[str, Path]:
    """Every file of a directory in the gen layout (relative path -> path); a RenderedError naming ``flag`` and
    what is missing when it lacks a rack file."""
    layout = f"{FRR_CONF}, {K3S_GLOB}, cilium/*.yaml, {PLATFORM_VALUES}"
    if not root.is_dir():
        raise RenderedError(f"{flag} {root}: not a directory; give a directory in the `gen` layout ({layout})")
    files = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}
    missing = [rel for rel in RACK_FILES_REQUIRED if rel not in files]
    if not any(rel.startswith("k3s/") and rel.endswith("/config.yaml") for rel in files):
        missing.append(K3S_GLOB.replace("*", "<node>"))
    if missing:
        raise RenderedError(f"{flag} {root}: missing {', '.join(missing)}; every rack file of the layout is needed "
                            "(docs/INVENTORY.md, Output layout)")
    return files


def load_yaml_documents(path: Path, rel: str) -> list[Doc]:
    """Every non-empty document of a YAML file; a parse error names the file and line."""
    try:
        raw = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as exc:
        raise RenderedError(f"{rel}: not valid YAML: {exc}") from exc
    docs = []
    for index, body in enumerate(raw):
        if body is None:
            continue
        if not isinstance(body, dict):
            raise RenderedError(f"{rel}: document {index} is a {type(body).__name__}, expected a mapping")
        docs.append(Doc(rel, index, body))
    return docs


def _single_mapping(root: Path, rel: str) -> dict:
    path = root / rel
    if not path.is_file():
        return {}
    docs = load_yaml_documents(path, rel)
    merged: dict[str, Any] = {}
    for d in docs:  # values files are one document; tolerate several by merging top-level keys
        merged.update(d.body)
    return merged


def _kubernetes_files(root: Path) -> Iterator[str]:
    for rel in (CILIUM_BGP, APISERVER_BGP):
        if (root / rel).is_file():
            yield rel
    apps = root / APPS_DIR
    if apps.is_dir():
        for p in sorted(apps.rglob("*")):
            if p.suffix in (".yaml", ".yml") and p.is_file():
                yield p.relative_to(root).as_posix()


def load_rendered(root: str | Path) -> Rendered:
    root = Path(root)
    if not root.is_dir():
        raise RenderedError(
            f"{root}: not a directory; run `invoke gen --out {root}` first or point at your config directory"
        )
    out = Rendered(root=root)
    for rel in _kubernetes_files(root):
        out.docs.extend(load_yaml_documents(root / rel, rel))
        out.files.append(rel)
    for path in sorted(root.glob(K3S_GLOB)):
        rel = path.relative_to(root).as_posix()
        out.k3s[path.parent.name] = _single_mapping(root, rel)
        out.files.append(rel)
    out.cilium_values = _single_mapping(root, CILIUM_VALUES)
    out.platform_values = _single_mapping(root, PLATFORM_VALUES)
    for rel in (CILIUM_VALUES, PLATFORM_VALUES):
        if (root / rel).is_file():
            out.files.append(rel)
    if (root / FRR_CONF).is_file():
        out.frr_conf = (root / FRR_CONF).read_text(encoding="utf-8")
        out.files.append(FRR_CONF)
    return out
