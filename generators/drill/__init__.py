"""Failover drills: make a failure happen in the running lab, measure what users lose, compare with the design.

Entry points: :func:`main` (``invoke drill``), :func:`run_drill`, :func:`write_report`.
"""
from __future__ import annotations

from generators.drill.cli import main
from generators.drill.report import write_report
from generators.drill.runner import DrillOptions, DrillResult, RunResult, run_drill

__all__ = ["main", "run_drill", "DrillOptions", "DrillResult", "RunResult", "write_report"]
