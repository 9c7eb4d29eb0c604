"""Command line of the lab tasks: lab-up, lab-down, status, verify, drill, images-build, setup.

Exit codes: 0 ok, 1 a check failed or the lab did not converge, 2 bad input, 3 environment problem.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import InventoryError

DEFAULT_INVENTORY = "topology/lab.yml"
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_ENVIRONMENT = 0, 1, 2, 3


def _log(msg: str) -> None:
    print(msg, flush=True)


def _log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _ensure(need: set[str], log=None) -> list[str]:
    from .prereqs import ensure_prereqs

    ensure_prereqs(need, log=log or _log)
    return []


def _load(args: argparse.Namespace):
    from .lifecycle import load_lab

    return load_lab(args.inventory, getattr(args, "name", None))


def cmd_lab_up(args: argparse.Namespace) -> int:
    from .lifecycle import failure_logs, format_up, lab_up, report_json
    from .runtime import LabError

    lab = _load(args)
    log = _log if not args.json else _log_stderr  # --json: stdout carries the report only
    try:
        report = lab_up(lab, log=log, ensure=lambda need: _ensure(need, log))
    except LabError as exc:
        print(f"lab-up failed: {exc}", file=sys.stderr)
        for line in exc.details:
            print(f"  | {line}", file=sys.stderr)
        try:
            for line in failure_logs(lab):
                print(f"  | {line}", file=sys.stderr)
        except Exception:  # noqa: BLE001 - logs are best effort once the lab is broken
            pass
        print(f"the lab is left as it is; `invoke lab-down --name {lab.name}` removes it", file=sys.stderr)
        return EXIT_FAILED
    print(report_json(report) if args.json else format_up(report))
    return EXIT_OK


def cmd_lab_down(args: argparse.Namespace) -> int:
    from .lifecycle import lab_down

    name = args.name
    if not name:
        from ..model import load_model

        model = load_model(args.inventory)
        if model.lab is None:
            print(f"{args.inventory}: not a lab inventory", file=sys.stderr)
            return EXIT_BAD_INPUT
        name = model.lab.name
    done = lab_down(name, log=_log)
    print(f"lab {name} is down" + ("" if done else " (nothing was running)"))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from .lifecycle import format_status, status

    st = status(_load(args))
    print(json.dumps(st, indent=2, sort_keys=True) if args.json else format_status(st))
    return EXIT_OK if st["containers"] else EXIT_FAILED


def cmd_verify(args: argparse.Namespace) -> int:
    from ..checks.verify import collect, format_results, results_json, run_checks
    from .expect import expectation_for

    lab = _load(args)
    if lab.running_containers().get(lab.gateway) != "running":
        print(f"lab {lab.name} is not running; start it with `invoke lab-up --inventory {args.inventory}`", file=sys.stderr)
        return EXIT_FAILED
    exp = expectation_for(lab)
    results = run_checks(collect(lab, exp), exp)
    print(results_json(results) if args.json else format_results(results))
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def cmd_images_build(args: argparse.Namespace) -> int:
    from ..model import load_model
    from .engine import Engine
    from .images import ensure_images, image_tag
    from .topology import lab_kinds

    _ensure({"docker", "gobgp"})
    model = load_model(args.inventory)
    if model.lab is None:
        print(f"{args.inventory}: not a lab inventory", file=sys.stderr)
        return EXIT_BAD_INPUT
    specs = [k.image_spec(model) for k in lab_kinds(model)]
    ensure_images(specs, Engine(), _log)
    for s in specs:
        print(f"{s.name:<8} {image_tag(s)}  {s.note}")
    return EXIT_OK


def cmd_setup(args: argparse.Namespace) -> int:
    _ensure({"docker", "containerlab", "gobgp", "frr-check"})
    return EXIT_OK


def cmd_drill(args: argparse.Namespace) -> int:
    from .. import drill

    from .lifecycle import load_lab

    def factory(name: str | None = None, inventory: str | None = None):
        return load_lab(inventory or args.inventory, name or args.name)

    return drill.main(args.rest, lab_factory=factory)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="k3s-bgp-lab")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn, help_: str, json_: bool = True, name_arg: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--inventory", default=DEFAULT_INVENTORY, help=f"lab inventory (default {DEFAULT_INVENTORY})")
        if name_arg:
            sp.add_argument("--name", default=None, help="lab name (default: lab.name of the inventory)")
        if json_:
            sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.set_defaults(fn=fn)
        return sp

    add("lab-up", cmd_lab_up, "render, build images, deploy and wait until converged")
    add("lab-down", cmd_lab_down, "remove everything the lab created", json_=False)
    add("status", cmd_status, "containers, sessions and VIPs")
    add("verify", cmd_verify, "named checks with evidence; exit 1 on any failure")
    add("images-build", cmd_images_build, "build the lab images offline (debootstrap + docker import)", json_=False, name_arg=False)
    add("setup", cmd_setup, "install and start what the lab needs (Debian/Ubuntu)", json_=False, name_arg=False)
    add("drill", cmd_drill, "failover drills (other arguments go to the drill: --scenario, --node, ...)", json_=False)
    return p


def main(argv: list[str]) -> int:
    p = parser()
    args, rest = p.parse_known_args(argv)
    if rest and args.command != "drill":
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    try:
        return args.fn(args)
    except InventoryError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_BAD_INPUT
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:
        from .engine import EngineError
        from .prereqs import PrereqError

        if isinstance(exc, (EngineError, PrereqError)):
            print(f"environment problem: {exc}", file=sys.stderr)
            return EXIT_ENVIRONMENT
        raise
