"""``rack-plan`` and ``rack-apply`` (``invoke rack.plan`` / ``rack.apply``): the composition root of the rollout.

A rack inventory rolls out to the rack (:class:`generators.rack.site.RackSite`); a lab inventory rehearses
the same steps on its running lab (:class:`generators.lab.rehearsal.LabSite`). Argument parsing and output
only; the steps are ``generators.rack.rollout``.

Exit codes: 0 done (or, for a plan or a dry run, computed), 1 a step failed or the plan holds something
apply would refuse, 2 bad input, 3 a target or tool cannot be reached, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, run_command
from .lab.lifecycle import load_lab
from .lab.rehearsal import LabSite
from .model import load_model
from .rack.rollout import APPLY_SCHEMA, STEPS, Rollout, RolloutFailed, rendered_files
from .rack.site import RackSite, Site
from .readback.rendered import Rendered, load_rendered, rack_files

DEFAULT_INVENTORY = "topology/rack.yml"


def site_for(inventory: str, name: str | None = None) -> Site:
    model = load_model(inventory)
    if model.lab is not None:
        return LabSite(load_lab(inventory, name))
    return RackSite(model)


@contextmanager
def _files(site: Site, directory: str | None) -> Iterator[Rendered]:
    """The files to roll out: the inventory's rendering, or a directory in the gen layout (``--dir``)."""
    if directory is not None:
        rack_files(Path(directory), "--dir")
        yield load_rendered(directory)
        return
    with tempfile.TemporaryDirectory(prefix="k3s-bgp-lab-rollout-") as tmp:
        yield rendered_files(site, Path(tmp) / "rendered")


def _say(as_json: bool):  # progress goes to stderr when stdout carries JSON
    def log(msg: str) -> None:
        print(msg, file=sys.stderr if as_json else sys.stdout, flush=True)

    return log


def cmd_plan(args: argparse.Namespace) -> int:
    def body() -> int:
        site = site_for(args.inventory, args.name)
        log = _say(args.json)
        with _files(site, args.dir) as rendered:
            plan = Rollout(site, rendered, force_conflicts=args.force_conflicts, log=log).plan(args.only)
        print(json.dumps(plan.to_json(), indent=1, sort_keys=True) if args.json else plan.render())
        return EXIT_FAILED if plan.problems else EXIT_OK

    return run_command(body)


def cmd_apply(args: argparse.Namespace) -> int:
    def body() -> int:
        site = site_for(args.inventory, args.name)
        log = _say(args.json)
        with _files(site, args.dir) as rendered:
            rollout = Rollout(site, rendered, force_conflicts=args.force_conflicts, wait_timeout=args.wait, log=log)
            if not args.yes:
                plan = rollout.plan(args.only)
                if args.json:
                    print(json.dumps({**plan.to_json(), "dry_run": True}, indent=1, sort_keys=True))
                else:
                    print(plan.render())
                    print("\ndry run: nothing was changed; run again with --yes to apply"
                          + (f" (refused: {len(plan.problems)})" if plan.problems else ""))
                return EXIT_FAILED if plan.problems else EXIT_OK
            try:
                results = rollout.apply(args.only)
            except RolloutFailed as exc:
                _report(site.label, exc.results, args.json, str(exc))
                raise
        _report(site.label, results, args.json, None)
        return EXIT_OK

    return run_command(body)


def _report(label: str, results: list, as_json: bool, error: str | None) -> None:
    if as_json:
        print(json.dumps({"schema": APPLY_SCHEMA, "site": label, "ok": error is None, "error": error,
                          "steps": [r.to_json() for r in results]}, indent=1, sort_keys=True))
        return
    print(f"\nrack.apply on {label}:")
    for r in results:
        what = {"nothing": "nothing to do", "not-run": "not run"}.get(r.status, r.status)
        print(f"  {r.step:<14} {what}" + (f": {r.error}" if r.error else ""))
        for line in [*r.changed, *r.details]:
            print(f"      {line}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="k3s-bgp-lab")
    sub = p.add_subparsers(dest="command", required=True)
    for name, fn, what in (("rack-plan", cmd_plan, "what rack-apply would change, per target; writes nothing"),
                           ("rack-apply", cmd_apply, "the rollout, step by step (a dry run without --yes)")):
        sp = sub.add_parser(name, help=what)
        sp.add_argument("--inventory", default=DEFAULT_INVENTORY,
                        help=f"rack inventory, or a lab inventory to rehearse on its lab (default {DEFAULT_INVENTORY})")
        sp.add_argument("--name", default=None, help="lab name (lab inventories; default: lab.name)")
        sp.add_argument("--dir", default=None, metavar="DIR",
                        help="roll out these files (the gen layout, e.g. hand-edited) instead of the inventory's")
        sp.add_argument("--only", choices=STEPS, default=None, help="one step: " + ", ".join(STEPS))
        sp.add_argument("--force-conflicts", action="store_true",
                        help="take over fields another field manager owns (never without this flag)")
        sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")
        sp.set_defaults(fn=fn)
        if name == "rack-apply":
            sp.add_argument("--yes", action="store_true", help="change things (without it: the plan, a dry run)")
            sp.add_argument("--wait", type=float, default=180.0, metavar="SECONDS",
                            help="how long each wait (sessions, Cilium, a node's apiserver) may take (default 180)")
    return p


COMMANDS = ("rack-plan", "rack-apply")


def main(argv: list[str]) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:
        return EXIT_BAD_INPUT if exc.code else EXIT_OK
    if getattr(args, "wait", 1.0) <= 0:
        print("k3s-bgp-lab: error: --wait must be a positive number of seconds", file=sys.stderr)
        return EXIT_BAD_INPUT
    return int(args.fn(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
