"""The import graph of ``generators/``: no cycle, no upward arrow, in-container code on the standard library.

The graph is read with ``ast`` from the source (every import, module-level or not), so it stays true
as the tree changes. Stages, lowest first (a module may import only its own stage or lower ones):
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "generators"

# (module prefix, stage). The longest matching prefix decides. Inside generators.lab the runtime is
# layered too: names/engine/prereqs/hostnet < images < kinds < topology < access < expect < faults/
# converge < lifecycle < cli.
STAGES: list[tuple[str, float]] = [
    ("generators", 0),  # the package itself (its version)
    ("generators.errors", 0),
    ("generators.versions", 0),
    ("generators.gomod", 1),
    ("generators.gobuild", 1.5),
    ("generators.pki", 1),
    ("generators.inventory", 1),
    ("generators.readback", 1),
    ("generators.in_container", 1),
    ("generators.model", 2),
    ("generators.render", 3),
    ("generators.output", 3),
    ("generators.pipeline", 4),
    ("generators.preflight", 5),
    ("generators.twin", 5),
    ("generators.checks", 5),
    ("generators.schemas", 5),
    ("generators.cluster", 5),
    ("generators.drill", 6),
    ("generators.rack", 6.5),  # rollout steps; the lab implements their Site for a rehearsal (lab imports rack)
    ("generators.lab", 7),
    ("generators.lab.names", 7.0),
    ("generators.lab.engine", 7.0),
    ("generators.lab.prereqs", 7.0),
    ("generators.lab.hostnet", 7.0), ("generators.lab.tunnel", 7.0),
    ("generators.lab.images", 7.1),
    ("generators.lab.kinds", 7.2),
    ("generators.lab.topology", 7.3),
    ("generators.lab.access", 7.3),
    ("generators.lab.expect", 7.4),
    ("generators.lab.faults", 7.5),
    ("generators.lab.converge", 7.5),
    ("generators.lab.lifecycle", 7.6),
    ("generators.lab.rehearsal", 7.7),
    ("generators.lab.cli", 7.9),
    ("generators.gen", 8),
    ("generators.rollout", 8),
    ("generators.cli", 9),
    ("generators.testing", 9),
    ("generators.__main__", 9),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that ``name`` imports (``from pkg import mod`` counts as importing ``pkg.mod``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "generators"}
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(name, path.name == "__init__.py", node)
            if target.split(".")[0] != "generators":
                continue
            subs = {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known}
            out |= subs or {target}
    return {m for m in out if m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: {m for m in imports_of(name, path, known) if m in known} for name, path in mods.items()}


def stage(module: str) -> float:
    best = max((p for p, _ in STAGES if module == p or module.startswith(p + ".")), key=len)
    return dict(STAGES)[best]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_stage():
    unplaced = [
        m for m in modules() if not any(m == p or m.startswith(p + ".") for p, _ in STAGES[1:]) and m != "generators"
    ]
    assert not unplaced, f"add these modules to STAGES in {__file__}: {unplaced}"


def test_no_import_cycle_inside_generators():
    assert cycles(graph()) == []


def test_no_module_imports_a_higher_stage():
    upward = sorted(
        f"{src} (stage {stage(src)}) imports {dst} (stage {stage(dst)})"
        for src, dsts in graph().items()
        for dst in dsts
        if stage(dst) > stage(src)
    )
    assert upward == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


IN_CONTAINER_SIBLINGS = {"agent_common", "standin_common", "frrstate"}


def _top_level_imports(path: Path) -> list[tuple[str, bool]]:
    """(module, inside a `try` whose handler catches ImportError) for every import of a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    fallback: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id == "ImportError" for h in node.handlers
        ):
            for h in node.handlers:
                fallback |= {id(n) for n in ast.walk(h)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in fallback) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            out.append((node.module or "", id(node) in fallback))
    return out


@pytest.mark.parametrize(
    "path",
    sorted((PACKAGE / "in_container").glob("*.py")) + [PACKAGE / "readback" / "frrstate.py"],
    ids=lambda p: p.name,
)
def test_in_container_code_needs_only_the_standard_library(path: Path):
    """It runs inside a lab container that has python3 and nothing of ours but the files copied beside it."""
    bad = [
        m
        for m, in_fallback in _top_level_imports(path)
        if not in_fallback
        and m.split(".")[0] not in sys.stdlib_module_names
        and m.split(".")[0] not in IN_CONTAINER_SIBLINGS
        and m != "__future__"
    ]
    assert bad == []
