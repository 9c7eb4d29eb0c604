"""Stage 4: write rendered files into a directory, all or nothing, with a MANIFEST.json."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from . import TOOL, __version__
from .errors import InputError

MANIFEST = "MANIFEST.json"


class OutputError(InputError):
    """``gen --out`` cannot (or must not) write there; the message says why and what to do."""


class OutputWriteError(OutputError, OSError):
    """The system refused a write (permissions, a read-only or full filesystem); nothing was replaced."""


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


def why_not_ours(path: Path) -> str | None:
    """None when ``gen`` may replace ``path``: empty, or holding exactly what a ``gen`` MANIFEST.json lists.

    The manifest must be one ``gen`` writes (its tool name and a sha256 per file), not merely a file of
    that name, and the directory must hold nothing it does not list.
    """
    if not any(path.iterdir()):
        return None
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return f"it exists and was not written by `gen` (no {MANIFEST})"
    try:
        doc = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return f"its {MANIFEST} is not one `gen` writes (not JSON)"
    files = doc.get("files") if isinstance(doc, dict) else None
    if (doc.get("tool") if isinstance(doc, dict) else None) != TOOL or not isinstance(files, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in files.values()
    ):
        return f"its {MANIFEST} was not written by `gen` (tool {TOOL!r} with a sha256 per file)"
    foreign = sorted(
        p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if (p.is_file() or p.is_symlink()) and p.relative_to(path).as_posix() not in files and p.name != MANIFEST
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        return f"it holds files `gen` did not write ({shown})"
    return None


def _os_problem(exc: OSError, out: Path) -> OutputWriteError:
    why = exc.strerror or str(exc)
    return OutputWriteError(f"{out}: cannot write the rendered files there ({why}: {exc.filename or out}); "
                       "choose an --out in a writable directory")


def write_tree(files: dict[str, str], out_dir: str | Path) -> Path:
    """Write ``files`` (relative path -> text) as ``out_dir``, replacing a previous render atomically.

    The files go to a temporary sibling directory first; only a complete tree is moved into place, with the
    mode of the directory it replaces. A directory that ``gen`` did not write is never replaced.
    """
    out = Path(out_dir).resolve()
    for rel in files:
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise OutputError(f"refusing to write outside the output directory: {rel}")
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise OutputError(f"{out}: refusing to replace it: it is not a directory; choose another --out")
        why = why_not_ours(out)
        if why:
            raise OutputError(f"{out}: refusing to replace it: {why}; choose another --out or remove it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as exc:
        raise _os_problem(exc, out) from exc
    try:
        for rel, text in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        os.chmod(tmp, (out.stat().st_mode & 0o7777) if out.exists() else 0o777 & ~_umask())
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.rename(out, old)
        os.rename(tmp, out)
        if old is not None:
            shutil.rmtree(old)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _os_problem(exc, out) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
