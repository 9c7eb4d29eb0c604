#!/usr/bin/env python3
"""Drill benchmark: loss windows per scenario with the seed's timers, with and without graceful restart.

    python benchmarks/bench_drills.py [--repeat 3] [--scenarios node-power-loss,...] [--out FILE]

Brings each benchmark lab up (benchmarks/lab-seed.yml, benchmarks/lab-seed-gr-off.yml), runs every
scenario --repeat times through the same runner as `invoke drill`, prints the median of each
measure, writes the raw rows as JSON, and takes the lab down. Takes about half an hour.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "graceful restart on (seed)": "benchmarks/lab-seed.yml",
    "graceful restart off": "benchmarks/lab-seed-gr-off.yml",
}
SCENARIOS = ["node-power-loss", "speaker-crash", "speaker-graceful-stop", "apiserver-down", "gateway-restart"]


def _value(run, measure: str):
    m = run.analysis.measurements.get(measure) if run.analysis else None
    return None if m is None else m.value


def summarize(run) -> dict:
    loss = run.analysis.loss if run.analysis else {}
    return {
        "ok": run.ok,
        "detect_s": _value(run, "detect"),
        "recovery_s": _value(run, "recovery"),
        "loss_window_s": {vip: round(s.window, 2) for vip, s in loss.items()},
        "failed": {vip: f"{s.failed}/{s.attempts}" for vip, s in loss.items()},
        "verdicts": {r.measure: r.verdict for r in run.rows},
    }


def median_or_dash(values: list) -> str:
    vals = [v for v in values if isinstance(v, (int, float))]
    return f"{statistics.median(vals):.1f}" if vals else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--variants", default=",".join(VARIANTS), help="which of: " + "; ".join(VARIANTS))
    ap.add_argument("--out", default="build/bench-drills.json")
    args = ap.parse_args()
    os.chdir(ROOT)

    from generators.drill import run_drill
    from generators.lab.lifecycle import lab_down, lab_up, load_lab
    from generators.lab.prereqs import ensure_prereqs

    ensure_prereqs({"docker", "containerlab", "gobgp"}, log=lambda m: None)
    results: dict = {}
    for variant in args.variants.split(","):
        inventory = VARIANTS[variant]
        lab = load_lab(inventory)
        try:
            lab_up(lab, log=lambda m: None)
            for scenario in args.scenarios.split(","):
                res = run_drill(lab, scenario, repeat=args.repeat, say=lambda m: None)
                results.setdefault(variant, {})[scenario] = [summarize(r) for r in res.runs]
                runs = results[variant][scenario]
                windows = {
                    vip: median_or_dash([r["loss_window_s"].get(vip) for r in runs]) for vip in ("apiserver", "traefik")
                }
                print(
                    f"{variant:<28} {scenario:<22} detect {median_or_dash([r['detect_s'] for r in runs]):>6} s  "
                    f"loss apiserver {windows['apiserver']:>6} s  traefik {windows['traefik']:>6} s  "
                    f"recovery {median_or_dash([r['recovery_s'] for r in runs]):>6} s  "
                    f"failed {[r['failed'] for r in runs]}",
                    flush=True,
                )
        finally:
            lab_down(lab.name, log=lambda m: None)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, sort_keys=True))
    print(f"raw rows: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
