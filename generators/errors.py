"""Errors with enough context for a user to fix their input without reading our code."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an inventory: where, what, why, and how to fix it."""

    file: str
    path: str  # dotted field path, list items as [i], e.g. nodes[1].address
    value: object
    why: str
    fix: str

    def render(self) -> str:
        shown = "<missing>" if self.value is _MISSING else repr(self.value)
        return f"{self.file}: {self.path or '<top level>'} = {shown}\n  why: {self.why}\n  fix: {self.fix}"


class _Missing:
    def __repr__(self) -> str:  # pragma: no cover - only for debugging output
        return "<missing>"


_MISSING = _Missing()
MISSING = _MISSING


class InventoryError(Exception):
    """The inventory is not valid. Carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        n = len(self.problems)
        head = f"invalid inventory ({n} problem{'s' if n != 1 else ''}); nothing was written"
        return head + "\n" + "\n".join(p.render() for p in self.problems)

    @property
    def paths(self) -> list[str]:
        return [p.path for p in self.problems]
