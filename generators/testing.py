"""`invoke test`: the lint gate (ruff, mypy), then what the tests need on the machine, then pytest."""
from __future__ import annotations

import subprocess
import sys
import time

from .errors import run_command
from .lab.prereqs import ensure_prereqs

# The gate: ruff with the rule set in pyproject.toml ([tool.ruff.lint]) and mypy ([tool.mypy]).
LINT_COMMANDS = (
    [sys.executable, "-m", "ruff", "check", "generators", "tests", "tasks.py", "benchmarks"],
    [sys.executable, "-m", "mypy"],
)


def pytest_args(unit: bool, e2e: bool, keyword: str | None, extra: list[str]) -> list[str]:
    args = [sys.executable, "-m", "pytest"]
    if unit and not e2e:
        args += ["-m", "not e2e"]
    elif e2e and not unit:
        args += ["-m", "e2e"]
    if keyword:
        args += ["-k", keyword]
    return args + extra


def prerequisites(unit: bool, e2e: bool) -> set[str]:
    need = {"frr-check", "gobgp"}  # unit tests run real vtysh --dryrun and gobgpd's config check
    if e2e or not unit:
        need |= {"docker", "containerlab", "images", "cilium"}  # debootstrap for the images; the Go builds
    return need


def lint() -> int:
    """ruff and mypy; the first that finds something ends the run with its exit code."""
    for argv in LINT_COMMANDS:
        t0 = time.monotonic()
        code = subprocess.call(argv)
        print(f"lint: {' '.join(argv[2:4])} {'ok' if code == 0 else f'failed (exit {code})'} "
              f"in {time.monotonic() - t0:.1f} s", flush=True)
        if code:
            return code
    return 0


def run_tests(unit: bool = False, e2e: bool = False, keyword: str | None = None, extra: list[str] | None = None,
              ensure: bool = True, gate: bool = True) -> int:
    def body() -> int:
        if gate and (code := lint()):
            return code
        if ensure:
            ensure_prereqs(prerequisites(unit, e2e), log=lambda m: print(m, flush=True))
        return subprocess.call(pytest_args(unit, e2e, keyword, extra or []))

    return run_command(body)
