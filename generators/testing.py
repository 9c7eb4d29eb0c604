"""`invoke test`: make sure the machine has what the tests need, then run pytest."""
from __future__ import annotations

import subprocess
import sys

from .lab.prereqs import ensure_prereqs


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
        need |= {"docker", "containerlab", "images"}  # images: debootstrap, to build the lab images
    return need


def run_tests(unit: bool = False, e2e: bool = False, keyword: str | None = None, extra: list[str] | None = None,
              ensure: bool = True) -> int:
    if ensure:
        ensure_prereqs(prerequisites(unit, e2e), log=lambda m: print(m, flush=True))
    return subprocess.call(pytest_args(unit, e2e, keyword, extra or []))
