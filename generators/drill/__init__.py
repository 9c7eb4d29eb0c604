"""Failover drills: make a failure happen in the running lab, measure what users lose, compare with the design.

Entry points: :func:`main` (``invoke drill``), :func:`run_drill`, :func:`write_report`.
"""
from __future__ import annotations

from generators.drill.cli import main
from generators.drill.runner import DrillOptions, DrillResult, RunResult, run_drill

__all__ = ["main", "run_drill", "DrillOptions", "DrillResult", "RunResult", "write_report"]


def write_report(results, out_dir):  # noqa: ANN001 - thin lazy wrapper: matplotlib loads only when reporting
    from generators.drill.report import write_report as _write

    return _write(results, out_dir)
