"""Stage 4: write rendered files into a directory, all or nothing, with a MANIFEST.json."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from . import __version__
from .errors import InputError

MANIFEST = "MANIFEST.json"
TOOL = "k3s-bgp-lab"


class OutputError(InputError):
    pass


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def manifest(files: dict[str, str], inventory_name: str, inventory_digest: str) -> str:
    doc = {
        "tool": TOOL,
        "tool_version": __version__,
        "inventory": {"name": inventory_name, "sha256": inventory_digest},
        "files": {
            rel: {"sha256": sha256_text(text), "bytes": len(text.encode("utf-8"))}
            for rel, text in sorted(files.items())
        },
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def _is_ours(path: Path) -> bool:
    return (path / MANIFEST).is_file() or not any(path.iterdir())


def write_tree(files: dict[str, str], out_dir: str | Path) -> Path:
    """Write ``files`` (relative path -> text) as ``out_dir``, replacing a previous render atomically.

    The files go to a temporary sibling directory first; only a complete tree is moved into place.
    A directory that was not written by us (no MANIFEST.json and not empty) is never replaced.
    """
    out = Path(out_dir).resolve()
    if out.exists() and (not out.is_dir() or not _is_ours(out)):
        raise OutputError(
            f"{out}: refusing to replace it: it exists and was not written by `gen` (no {MANIFEST}); "
            "choose another --out or remove it"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for rel, text in files.items():
            target = tmp / rel
            if ".." in Path(rel).parts or Path(rel).is_absolute():
                raise OutputError(f"refusing to write outside the output directory: {rel}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.rename(out, old)
        os.rename(tmp, out)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
