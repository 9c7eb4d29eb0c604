"""Preflight: prove the design's pitfalls and inconsistencies from the rendered files, before the rack.

It reads a rendered directory (``invoke gen`` output, or a user's own files in the same layout)
through :mod:`generators.readback.rendered` and :mod:`generators.readback.frrconf`; it never looks at our
inventory model and needs no Docker. Every check has a stable id and severity: see
:data:`generators.preflight.findings.CHECKS` and README.md.
"""
from __future__ import annotations

from .cli import main
from .findings import CHECKS, ERROR, WARNING, Check, Finding, Report
from .run import run

__all__ = ["CHECKS", "Check", "ERROR", "Finding", "Report", "WARNING", "main", "run"]
