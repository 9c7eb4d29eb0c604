#!/usr/bin/env python3
"""Drill benchmark: loss windows per scenario with the seed's timers, with and without graceful restart.

    python benchmarks/bench_drills.py [--repeat 3] [--scenarios node-power-loss,...] [--variants V,...] [--out FILE]

Brings each benchmark lab up, runs every scenario --repeat times through the same runner as `invoke drill`,
prints the median of each measure, writes the raw rows as JSON, and takes the lab down. Variants (all with
the seed's hold 15 / keepalive 5):

- benchmarks/lab-seed.yml: the seed (Cilium's graceful restart 120 s with the N-bit, the gateway a helper);
- benchmarks/lab-seed-gr-off.yml: Cilium's graceful restart off;
- benchmarks/lab-seed-twin.yml: the seed at twin fidelity (the baseline of the next two);
- benchmarks/lab-seed-helper-off.yml: Cilium's graceful restart on, the gateway no helper
  (`gateway.graceful_restart: disabled`; twin fidelity);
- benchmarks/lab-seed-restart-hold.yml: Cilium's restart time cut to the hold time (15 s), the gateway a
  helper (twin fidelity).

Scenario `agent-restart` is `speaker-crash` with the speaker started again after --agent-down seconds (a
Cilium agent restart: the session dies without a Cease, docs/FACTS.md#graceful-restart), instead of once its
next-hop has left the FIB. The whole run takes about half an hour per variant with --repeat 3.
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
    "seed at twin fidelity": "benchmarks/lab-seed-twin.yml",
    "gateway helper off": "benchmarks/lab-seed-helper-off.yml",
    "restart time = hold": "benchmarks/lab-seed-restart-hold.yml",
}
SCENARIOS = ["node-power-loss", "speaker-crash", "speaker-graceful-stop", "apiserver-down", "gateway-restart"]
AGENT_RESTART = "agent-restart"  # speaker-crash, speaker back after --agent-down seconds


def _value(run, measure: str):
    m = run.analysis.measurements.get(measure) if run.analysis else None
    return None if m is None else m.value


def summarize(run) -> dict:
    loss = run.analysis.loss if run.analysis else {}
    inputs = run.inputs
    return {
        "ok": run.ok,
        "detect_s": _value(run, "detect"),
        "stale_s": _value(run, "stale"),
        "recovery_s": _value(run, "recovery"),
        "longest_burst_s": {vip: _value(run, f"longest_burst:{vip}") for vip in ("apiserver", "traefik")},
        "loss_window_s": {vip: round(s.window, 2) for vip, s in loss.items()},
        "failed": {vip: f"{s.failed}/{s.attempts}" for vip, s in loss.items()},
        "verdicts": {r.measure: r.verdict for r in run.rows},
        "outside": [f"{r.measure}: {r.measured} (expected {r.expected})" for r in run.outside],
        "errors": list(run.errors),
        "gr_active": None if inputs is None else inputs.gr_active,
        "gateway_helper": None if inputs is None else inputs.gateway_helper,
        "n_bit": None if inputs is None else inputs.n_bit,
    }


def median_or_dash(values: list) -> str:
    vals = [v for v in values if isinstance(v, (int, float))]
    return f"{statistics.median(vals):.1f}" if vals else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--variants", default=",".join(VARIANTS), help="which of: " + "; ".join(VARIANTS))
    ap.add_argument("--agent-down", type=float, default=10.0, help=f"seconds the speaker stays down in {AGENT_RESTART}")
    ap.add_argument("--out", default="build/bench-drills.json")
    args = ap.parse_args()
    os.chdir(ROOT)

    from generators.drill import run_drill
    from generators.drill.runner import DrillOptions
    from generators.lab.lifecycle import lab_down, lab_up, load_lab
    from generators.lab.prereqs import ensure_prereqs

    ensure_prereqs({"docker", "containerlab", "gobgp"}, log=lambda m: None)
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(map(repr, unknown))}; known: {'; '.join(VARIANTS)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    for variant in variants:
        inventory = VARIANTS[variant]
        lab = load_lab(inventory)
        print(f"{variant}: {inventory}, fidelity {lab.model.lab.fidelity if lab.model.lab else '?'}", flush=True)
        try:
            lab_up(lab, log=lambda m: None)
            for scenario in args.scenarios.split(","):
                if scenario == AGENT_RESTART:
                    res = run_drill(lab, "speaker-crash", repeat=args.repeat, say=lambda m: None,
                                    options=DrillOptions(restart_delay=args.agent_down))
                else:
                    res = run_drill(lab, scenario, repeat=args.repeat, say=lambda m: None)
                results.setdefault(variant, {})[scenario] = [summarize(r) for r in res.runs]
                out.write_text(json.dumps(results, indent=2, sort_keys=True))  # kept if a later scenario fails
                runs = results[variant][scenario]
                windows = {
                    vip: median_or_dash([r["loss_window_s"].get(vip) for r in runs]) for vip in ("apiserver", "traefik")
                }
                print(
                    f"{variant:<28} {scenario:<22} detect {median_or_dash([r['detect_s'] for r in runs]):>6} s  "
                    f"loss apiserver {windows['apiserver']:>6} s  traefik {windows['traefik']:>6} s  "
                    f"recovery {median_or_dash([r['recovery_s'] for r in runs]):>6} s  "
                    f"failed {[r['failed'] for r in runs]}"
                    + "".join(f"\n    run {i + 1}: {'; '.join(r['outside'] + r['errors'])}"
                              for i, r in enumerate(runs) if r["outside"] or r["errors"]),
                    flush=True,
                )
        finally:
            lab_down(lab.name, log=lambda m: None)
    out.write_text(json.dumps(results, indent=2, sort_keys=True))
    print(f"raw rows: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
