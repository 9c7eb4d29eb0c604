"""Stage 1: read an inventory file and the files it includes into one plain mapping.

An inventory may say ``include: other.yml`` (or a list): the included files are read first and
this file's keys are merged over them (mappings merge key by key, everything else is replaced).
Each leaf remembers which file set it, so that a later error can name the right file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import MISSING, InventoryError, Problem

INCLUDE_KEY = "include"


@dataclass
class RawInventory:
    data: dict
    path: Path  # the file the user named
    files: list[Path] = field(default_factory=list)  # every file read, includes first
    origins: dict[tuple, Path] = field(default_factory=dict)  # key path -> file that set it

    def origin_of(self, path: tuple) -> Path:
        """The file that set ``path`` or its nearest set parent; the top file otherwise."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.origins:
                return self.origins[path[:n]]
        return self.path

    def digest(self) -> str:
        """sha256 over every file read, in order, so an edit to an included file shows too."""
        h = hashlib.sha256()
        for f in self.files:
            h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
        return h.hexdigest()


def _read_yaml(path: Path, chain: tuple[Path, ...]) -> dict:
    def problem(why: str, fix: str, value: object = MISSING) -> InventoryError:
        return InventoryError([Problem(str(path), "", value, why, fix)])

    via = f" (included from {chain[-1]})" if chain else ""
    if path.is_dir():
        raise problem(f"is a directory, not an inventory file{via}", "give the path of a YAML inventory file, "
                      "e.g. topology/lab.yml")
    if not path.is_file():
        raise problem(f"file not found{via}", "check the path; includes are relative to the including file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise problem(f"cannot be read{via}: {exc}", "check the file's permissions and that it is UTF-8 text") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise problem(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}", "fix the YAML syntax") from exc
    if data is None:
        raise problem(f"the file is empty{via}", "write the inventory (see topology/rack.yml) or point at another")
    if not isinstance(data, dict):
        raise problem(
            f"the top level is a {type(data).__name__}, not a mapping",
            "start the file with keys such as `name:` and `nodes:`",
            data,
        )
    return data


def _merge(base: dict, over: dict, origins: dict | None, source: Path, prefix: tuple = ()) -> dict:
    """Merge ``over`` onto ``base``; record in ``origins`` that ``source`` set each key (None: don't)."""
    out = dict(base)
    for key, value in over.items():
        path = prefix + (key,)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, origins, source, path)
        else:
            out[key] = value
            if origins is not None:
                for k in [k for k in origins if k[: len(path)] == path]:
                    del origins[k]  # the whole subtree now comes from `source`
        if origins is not None and (path not in origins or not isinstance(value, dict)):
            origins[path] = source  # a merged mapping keeps the file that introduced it
    return out


def _load(path: Path, chain: tuple[Path, ...], raw: RawInventory) -> dict:
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in chain + (path,))
        raise InventoryError(
            [Problem(str(chain[-1]), INCLUDE_KEY, str(path), f"include cycle: {cycle}", "remove one of the includes")]
        )
    data = _read_yaml(path, chain)
    includes = data.pop(INCLUDE_KEY, [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise InventoryError(
            [
                Problem(
                    str(path),
                    INCLUDE_KEY,
                    includes,
                    "must be a file name or a list of file names",
                    "e.g. `include: rack.yml`",
                )
            ]
        )
    merged: dict = {}
    for inc in includes:
        merged = _merge(merged, _load(path.parent / inc, chain + (path,), raw), None, path)
    raw.files.append(path)
    return _merge(merged, data, raw.origins, path)


def load_inventory(path: str | Path) -> RawInventory:
    """Read ``path`` and its includes; raise InventoryError on unreadable files."""
    top = Path(path)
    raw = RawInventory(data={}, path=top.resolve())
    raw.data = _load(top, (), raw)
    return raw
