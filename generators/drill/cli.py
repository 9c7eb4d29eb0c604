"""``invoke drill``: argument parsing and the top-level flow (the lab object comes from ``lab_factory``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

from generators.drill.design import DesignError
from generators.drill.gateway import GatewayError
from generators.drill.lab_api import Lab
from generators.drill.report import render_table, report_json, write_report
from generators.drill.runner import DrillError, DrillOptions, DrillResult, run_drill
from generators.drill.scenarios import ALL, resolve
from generators.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from generators.readback.rendered import RenderedError
from generators.versions import GOBGP_VERSION

LabFactory = Callable[..., Lab]  # lab_factory(name=..., inventory=...) -> Lab


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="drill",
        description=(
            "Make failures happen in the running lab and measure, from the user's side, what is lost and for how "
            "long; compare each measure with the bound the rendered design promises."
        ),
    )
    p.add_argument("--scenario", required=True, help=f"one of {', '.join(ALL)}, or all")
    p.add_argument("--node", help="target cluster node (default: the first one)")
    p.add_argument("--repeat", type=int, default=1, help="runs per scenario")
    p.add_argument("--rate", type=float, default=10.0, help="new connections per second per VIP (>= 10 recommended)")
    p.add_argument("--timeout", type=float, default=1.0, help="probe attempt timeout in seconds")
    p.add_argument("--sample-interval", type=float, default=0.2, help="gateway control-plane sampling interval, s")
    p.add_argument("--margin", type=float, default=1.5, help="deadlines are bound x margin + 5 s")
    p.add_argument("--speaker-version", default=GOBGP_VERSION, help="GoBGP version the speakers run (for the bounds)")
    p.add_argument(
        "--restart-delay",
        type=float,
        default=None,
        help="speaker scenarios: start the speaker again after this many seconds "
        "(default: once the node has left the gateway's FIB)",
    )
    p.add_argument("--json", action="store_true", help="print the JSON report (every raw sample) on stdout")
    p.add_argument("--out", default="build/reports", help="reports go to OUT/<lab>/<timestamp>/")
    p.add_argument("--lab-name", help="name of the running lab")
    p.add_argument("--inventory", help="lab inventory the lab was brought up from")
    return p


def _wait_verified(lab: Lab, clock: Callable[[], float], pause: Callable[[float], None], timeout: float) -> bool:
    """Poll ``verify`` until it passes or ``timeout`` runs out (the lab re-converges after an undo)."""
    deadline = clock() + timeout
    while not lab.verify():
        if clock() >= deadline:
            return False
        pause(2.0)
    return True


def main(
    argv: list[str] | None = None,
    lab_factory: LabFactory | None = None,
    *,
    clock: Callable[[], float] = time.time,
    pause: Callable[[float], None] = time.sleep,
) -> int:
    """``invoke drill``; exit 0 when every measure is inside its bound and the lab verifies afterwards."""
    args = build_parser().parse_args(argv)
    err = sys.stderr
    if lab_factory is None:
        print("drill: no lab factory given; run it through `invoke drill`, which passes the running lab", file=err)
        return EXIT_BAD_INPUT
    if args.repeat < 1 or args.rate <= 0 or args.timeout <= 0:
        print("drill: --repeat must be >= 1 and --rate/--timeout positive", file=err)
        return EXIT_BAD_INPUT
    try:
        scenarios = resolve(args.scenario)
    except ValueError as exc:
        print(f"drill: {exc}", file=err)
        return EXIT_BAD_INPUT
    lab = lab_factory(name=args.lab_name, inventory=args.inventory)
    if args.node is not None and args.node not in lab.nodes:
        print(f"drill: --node {args.node!r} is not a node of lab {lab.name} (nodes: {', '.join(lab.nodes)})", file=err)
        return EXIT_BAD_INPUT
    opts = DrillOptions(
        rate=args.rate,
        timeout=args.timeout,
        sample_interval=args.sample_interval,
        margin=args.margin,
        speaker_version=args.speaker_version,
        restart_delay=args.restart_delay,
    )
    results: list[DrillResult] = []
    def say(msg: str) -> None:
        print(f"[drill] {msg}", file=err, flush=True)

    code = EXIT_OK
    try:
        for sc in scenarios:
            results.append(
                run_drill(
                    lab,
                    sc,
                    node=args.node,
                    repeat=args.repeat,
                    rate=args.rate,
                    options=opts,
                    clock=clock,
                    pause=pause,
                    say=say,
                )
            )
    except KeyboardInterrupt:
        say("interrupted: the fault was undone; checking that the lab verifies")
        ok = _wait_verified(lab, clock, pause, timeout=120.0)
        say(
            "lab verifies"
            if ok
            else "LAB DOES NOT VERIFY after 120 s: run `invoke verify` and `invoke lab-up` to repair"
        )
        code = EXIT_INTERRUPTED
    except (DrillError, GatewayError, DesignError, RenderedError) as exc:
        print(f"drill: {exc}", file=err)
        code = EXIT_FAILED
    if results:
        out_dir = Path(args.out) / lab.name / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        index = write_report(results, out_dir)
        decided_by = {"cilium": "Cilium's own code", "twin": "the Python twin"}.get(results[0].fidelity, "?")
        print(f"lab {lab.name}, {results[0].fidelity} fidelity ({decided_by} decided what is advertised)",
              file=err if args.json else sys.stdout)
        print(render_table(results), file=err if args.json else sys.stdout)
        print(f"\nreport: {index}", file=err)
        if args.json:
            json.dump(report_json(results), sys.stdout, indent=1, sort_keys=True)
            print()
        if code == EXIT_OK and not all(r.ok for r in results):
            code = EXIT_FAILED
    return code
