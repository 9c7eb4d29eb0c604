"""Command line of the lab tasks: lab-up, lab-down, status, verify, drill, images-build, setup.

Argument parsing and output only; errors map to exit codes in ``generators.errors.run_command``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Callable

from .. import drill
from ..checks.verify import format_results, results_json
from ..errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    InputError,
    LabError,
    run_command,
)
from ..model import load_model
from .access import LabAccess, LabNotRunning
from .engine import Engine
from .expect import verify_lab
from .faults import LabFaults
from .images import ensure_images, image_tag
from .kinds import lab_kinds
from .lifecycle import (
    LabUpInterrupted,
    failure_logs,
    format_status,
    format_up,
    lab_down,
    lab_up,
    load_lab,
    report_json,
    status,
)
from .names import validate_lab_name
from .prereqs import ensure_prereqs

DEFAULT_INVENTORY = "topology/lab.yml"


def _log(msg: str) -> None:
    print(msg, flush=True)


def _log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _load(args: argparse.Namespace) -> LabFaults:
    return load_lab(args.inventory, getattr(args, "name", None))


def _down_hint(name: str) -> str:
    return f"`invoke lab-down --name {shlex.quote(name)}` removes it"


def cmd_lab_up(args: argparse.Namespace) -> int:
    lab = _load(args)
    log = _log if not args.json else _log_stderr  # --json: stdout carries the report only
    try:
        report = lab_up(lab, log=log, ensure=lambda need: ensure_prereqs(need, log=log), take_over=args.take_over,
                        rendered_from=Path(args.rendered).resolve() if args.rendered else None)
    except LabUpInterrupted as exc:
        print(f"interrupted during {exc.phase or 'start-up'}", file=sys.stderr)
        if exc.left:
            print("left on the host (lab-down removes all of it):", file=sys.stderr)
            for line in exc.left:
                print(f"  {line}", file=sys.stderr)
        print(f"run: {exc.hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except LabError as exc:
        print(f"lab-up failed: {exc}", file=sys.stderr)
        for line in exc.details:
            print(f"  | {line}", file=sys.stderr)
        try:
            for line in failure_logs(lab):
                print(f"  | {line}", file=sys.stderr)
        except Exception:  # noqa: BLE001 - logs are best effort once the lab is broken
            pass
        print(f"the lab is left as it is; {_down_hint(lab.name)}", file=sys.stderr)
        return EXIT_FAILED
    print(report_json(report) if args.json else format_up(report))
    return EXIT_OK


def cmd_lab_down(args: argparse.Namespace) -> int:
    if args.name is not None:
        name = validate_lab_name(args.name)
    else:
        model = load_model(args.inventory)
        if model.lab is None:
            raise InputError(f"{args.inventory}: not a lab inventory (no `lab:` section); give --name or a lab "
                             "inventory")
        name = model.lab.name
    done = lab_down(name, log=_log)
    print(f"lab {name} is down" + ("" if done else " (nothing was running)"))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    st = status(_load(args))
    print(json.dumps(st, indent=2, sort_keys=True) if args.json else format_status(st))
    complete = st["containers"] and not st["missing"] and not st["not_running"]
    return EXIT_OK if complete else EXIT_FAILED


def cmd_verify(args: argparse.Namespace) -> int:
    lab = _load(args)
    if lab.running_containers().get(lab.gateway) != "running":
        raise LabNotRunning(f"lab {lab.name} is not running; start it with "
                            f"`invoke lab-up --inventory {shlex.quote(args.inventory)}`")
    results = verify_lab(lab)
    print(results_json(results) if args.json else format_results(results))
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def cmd_images_build(args: argparse.Namespace) -> int:
    model = load_model(args.inventory)
    LabAccess(model)  # a lab inventory, with a valid lab name
    ensure_prereqs({"docker", "gobgp"}, log=_log)
    for kind in lab_kinds(model):
        kind.prepare(model, _log)
    specs = [k.image_spec(model) for k in lab_kinds(model)]
    ensure_images(specs, Engine(), _log)
    for s in specs:
        print(f"{s.name:<8} {image_tag(s)}  {s.note}")
    return EXIT_OK


def cmd_setup(args: argparse.Namespace) -> int:
    need = {"docker", "containerlab", "gobgp", "frr-check"}
    if not args.no_go_builds:
        need.add("cilium")
    ensure_prereqs(need, log=_log)
    return EXIT_OK


def cmd_drill(args: argparse.Namespace) -> int:
    def factory(name: str | None = None, inventory: str | None = None) -> LabFaults:
        lab = load_lab(inventory or args.inventory, name or args.name)
        if lab.running_containers().get(lab.gateway) != "running":
            raise LabNotRunning(f"lab {lab.name} is not running, so there is nothing to drill; start it with "
                                f"`invoke lab-up --inventory {shlex.quote(str(inventory or args.inventory))}`")
        return lab

    return drill.main(args.rest, lab_factory=factory)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="k3s-bgp-lab")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str, json_: bool = True,
            name_arg: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--inventory", default=DEFAULT_INVENTORY, help=f"lab inventory (default {DEFAULT_INVENTORY})")
        if name_arg:
            sp.add_argument("--name", default=None, help="lab name (default: lab.name of the inventory)")
        if json_:
            sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.set_defaults(fn=fn)
        return sp

    up = add("lab-up", cmd_lab_up, "render, build images, deploy and wait until converged")
    up.add_argument("--take-over", action="store_true",
                    help="take over a lab of this name that another checkout or inventory brought up")
    up.add_argument("--rendered", default=None, metavar="DIR",
                    help="rehearse these files (the `gen` layout, e.g. hand-written) instead of the inventory's")
    add("lab-down", cmd_lab_down, "remove everything the lab created", json_=False)
    add("status", cmd_status, "containers, sessions and VIPs")
    add("verify", cmd_verify, "named checks with evidence; exit 1 on any failure")
    add("images-build", cmd_images_build, "build the lab images offline (debootstrap + docker import)", json_=False,
        name_arg=False)
    st = add("setup", cmd_setup, "install and start what the lab needs (Debian/Ubuntu)", json_=False, name_arg=False)
    st.add_argument("--no-go-builds", action="store_true",
                    help="skip the Cilium fidelity's Go builds (enough for twin-fidelity labs)")
    add("drill", cmd_drill, "failover drills (other arguments go to the drill: --scenario, --node, ...)", json_=False)
    return p


def main(argv: list[str]) -> int:
    p = parser()
    try:
        args, rest = p.parse_known_args(argv)
    except SystemExit as exc:  # argparse printed its usage message
        return EXIT_BAD_INPUT if exc.code else EXIT_OK
    if rest and args.command != "drill":
        p.print_usage(sys.stderr)
        print(f"k3s-bgp-lab: error: unrecognized arguments: {' '.join(rest)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    args.rest = rest
    return run_command(lambda: args.fn(args))
