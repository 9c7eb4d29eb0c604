#!/usr/bin/env python3
"""Measure lab-up to converged (images present), lab-down, and a cold image build.

    python benchmarks/bench_lab.py [--inventory topology/lab.yml] [--runs 5] [--cold]

Prints every run and the median. Needs root, Docker and containerlab (run `invoke setup` first).
--cold also removes the lab images and builds them with an empty cache (about 2 minutes).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = (
        int(
            next(
                line.split()[1]
                for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")
            )
        )
        // 1024**2
    )
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB, kernel {platform.release()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inventory", default="topology/lab.yml")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cold", action="store_true", help="also measure a cold image build")
    args = ap.parse_args()
    os.chdir(ROOT)

    from generators.lab.engine import Engine
    from generators.lab.images import ensure_images, image_tag
    from generators.lab.lifecycle import lab_down, lab_up, load_lab
    from generators.lab.prereqs import ensure_prereqs
    from generators.lab.topology import lab_kinds

    ensure_prereqs({"docker", "containerlab", "gobgp"}, log=lambda m: None)
    quiet = lambda m: None  # noqa: E731
    lab = load_lab(args.inventory)
    specs = [k.image_spec(lab.model) for k in lab_kinds(lab.model)]
    lab_down(lab.name, log=quiet)
    print(f"machine: {machine()}")

    if args.cold:
        engine = Engine()
        for spec in specs:
            subprocess.run(["docker", "rmi", "-f", image_tag(spec)], capture_output=True, check=False)
        with tempfile.TemporaryDirectory() as cache:
            os.environ["K3S_BGP_LAB_CACHE"] = cache
            ensure_prereqs({"gobgp"}, log=quiet)  # GoBGP into the empty cache (Go's own build cache stays warm)
            t0 = time.monotonic()
            ensure_images(specs, engine, quiet)
            print(f"cold image build ({', '.join(s.name for s in specs)}): {time.monotonic() - t0:.1f} s")
        os.environ.pop("K3S_BGP_LAB_CACHE")

    ups, downs, phases = [], [], {}
    for i in range(args.runs):
        lab = load_lab(args.inventory)
        t0 = time.monotonic()
        report = lab_up(lab, log=quiet)
        ups.append(time.monotonic() - t0)
        for p in report.phases:
            phases.setdefault(p.name, []).append(p.seconds)
        t0 = time.monotonic()
        lab_down(lab.name, log=quiet)
        downs.append(time.monotonic() - t0)
        print(
            f"run {i + 1}: lab-up to converged {ups[-1]:.1f} s ("
            + ", ".join(f"{p.name} {p.seconds:.1f}" for p in report.phases)
            + f"), lab-down {downs[-1]:.1f} s"
        )
    print(f"median lab-up to converged: {statistics.median(ups):.1f} s over {args.runs} runs")
    print("median per phase: " + ", ".join(f"{k} {statistics.median(v):.1f} s" for k, v in phases.items()))
    print(f"median lab-down: {statistics.median(downs):.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
