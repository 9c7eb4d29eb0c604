"""The one error base and the exit codes every command uses.

Every failure a user can cause or meet is a :class:`LabToolError` subclass that carries its exit code
and a message that says what is wrong and what to do. The command-line entry points map these in one
place (:func:`generators.cli_support.run_command`); a Python traceback means a bug in this project.

Exit codes (README "Exit codes"): 0 ok, 1 a check failed (or the lab did not converge), 2 bad input
(inventory, arguments, files), 3 environment (Docker, a tool, the network), 130 interrupted.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, TextIO

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130


class LabToolError(Exception):
    """Base of every expected failure. ``details`` are extra lines (a log tail) shown under the message."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str = "", details: list[str] | None = None):
        super().__init__(message)
        self.details = list(details or [])

    def render(self) -> str:
        return str(self)


class InputError(LabToolError):
    """Bad input: an inventory, an argument, a file. The message names the file, the field and the fix."""

    exit_code = EXIT_BAD_INPUT


class EnvironmentProblem(LabToolError):
    """The machine lacks something (Docker, a tool, a network path); the message says what to install or start."""

    exit_code = EXIT_ENVIRONMENT


class CheckFailed(LabToolError):
    """The tool ran, and what it checked is not as it should be."""

    exit_code = EXIT_FAILED


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an inventory: where, what, why, and how to fix it."""

    file: str
    path: str  # dotted field path, list items as [i], e.g. nodes[1].address
    value: object
    why: str
    fix: str

    def render(self) -> str:
        shown = "<missing>" if self.value is MISSING else repr(self.value)
        return f"{self.file}: {self.path or '<top level>'} = {shown}\n  why: {self.why}\n  fix: {self.fix}"


class _Missing:
    def __repr__(self) -> str:  # pragma: no cover - only for debugging output
        return "<missing>"


MISSING = _Missing()


class InventoryError(InputError):
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


def run_command(fn: Callable[[], int], stderr: TextIO | None = None, interrupted_hint: str = "") -> int:
    """Run one command's body; map every expected failure to its message and exit code, in one place.

    A :class:`LabToolError` prints its message (and ``details``) on stderr and returns its exit code;
    Ctrl-C prints that the command was interrupted (with ``interrupted_hint``) and returns 130.
    """
    err = stderr or sys.stderr
    try:
        return fn()
    except LabToolError as exc:
        print(exc.render() if isinstance(exc, InventoryError) else f"{_PREFIX[exc.exit_code]}{exc.render()}",
              file=err, flush=True)
        for line in exc.details:
            print(f"  | {line}", file=err)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted" + (f"; {interrupted_hint}" if interrupted_hint else ""), file=err, flush=True)
        return EXIT_INTERRUPTED


_PREFIX = {EXIT_FAILED: "failed: ", EXIT_BAD_INPUT: "error: ", EXIT_ENVIRONMENT: "environment problem: "}


class LabError(LabToolError):
    """Something in the running lab failed (a command in a container, convergence); exit 1 with the details."""
