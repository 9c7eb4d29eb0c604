"""Command line: the same entry points invoke's tasks call, for people who don't use invoke.

    k3s-bgp-lab gen --inventory topology/rack.yml --out build/rack
    k3s-bgp-lab validate --inventory topology/rack.yml [--dir DIR] [--json]
    k3s-bgp-lab preflight --dir DIR
    k3s-bgp-lab lab-up | lab-down | status | verify | drill | images-build | setup ...
    k3s-bgp-lab rack-plan | rack-apply --inventory topology/rack.yml [--yes] [--only STEP]
    python -m generators gen ...

Exit codes (generators.errors): 0 success, 1 a check failed, 2 bad input, 3 environment problem, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

from . import preflight, rollout, schemas
from .errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, InputError, run_command
from .gen import generate, render_inventory
from .lab import cli as lab_cli
from .model import load_model
from .output import MANIFEST, write_tree
from .readback.rendered import load_rendered

LAB_COMMANDS = ("lab-up", "lab-down", "status", "verify", "drill", "images-build", "setup")


def cmd_gen(inventory: str, out: str, as_json: bool = False) -> int:
    def body() -> int:
        model, path = generate(inventory, out)
        files = json.loads((path / MANIFEST).read_text())["files"]
        if as_json:
            print(json.dumps({"inventory": str(inventory), "out": str(path), "files": files}, indent=2, sort_keys=True))
        else:
            print(f"rendered {len(files)} files for {model.name!r} into {path}")
            for rel in files:
                print(f"  {rel}")
        return EXIT_OK

    return run_command(body)


def cmd_preflight(argv: list[str]) -> int:
    """Preflight reads files only; with --inventory, the gateway's FRR version comes from the model."""

    def body() -> int:
        args = list(argv)
        if "--inventory" in args and "--frr-version" not in args:
            at = args.index("--inventory") + 1
            if at < len(args):
                args += ["--frr-version", load_model(args[at]).gateway.frr_version]
        return preflight.main(args)

    return run_command(body)


def cmd_validate(inventory: str, directory: str | None, as_json: bool = False) -> int:
    """Every rendered file against the real schemas (Cilium CRDs and chart, Kubernetes, Gateway API) and FRR."""

    def body() -> int:
        model = load_model(inventory)
        versions = schemas.SchemaVersions(
            cilium=model.cilium_version, kubernetes=model.k3s_version, traefik_chart=model.traefik_chart_version
        )
        if directory is not None:
            problems = schemas.validate_rendered(load_rendered(directory), versions)
            source = directory
        else:
            with tempfile.TemporaryDirectory(prefix="validate-") as tmp:
                root = write_tree(render_inventory(inventory), f"{tmp}/rendered")
                problems = schemas.validate_rendered(load_rendered(root), versions)
            source = inventory
        if as_json:
            print(json.dumps({"source": source, "ok": not problems, "problems": problems}, indent=2, sort_keys=True))
        else:
            for where, errors in sorted(problems.items()):
                print(where)
                for error in errors:
                    print(f"  {error}")
            print(
                f"{'no problem' if not problems else f'{len(problems)} file(s) with problems'} in {source} "
                f"(Cilium {versions.cilium}, Kubernetes {schemas.k8s_minor_of(versions.kubernetes)}, "
                f"Gateway API {versions.gateway_api})"
            )
        return EXIT_FAILED if problems else EXIT_OK

    return run_command(body)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="k3s-bgp-lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("gen", help="render every config of the design from one inventory")
    g.add_argument("--inventory", default="topology/rack.yml", help="inventory file (default: topology/rack.yml)")
    g.add_argument("--out", required=True, help="output directory (replaced atomically)")
    g.add_argument("--json", action="store_true", help="print the file list as JSON")
    v = sub.add_parser("validate", help="check rendered files against the real schemas and FRR")
    v.add_argument(
        "--inventory",
        default="topology/rack.yml",
        help="inventory: its versions pick the schemas; without --dir its rendering is checked",
    )
    v.add_argument("--dir", default=None, help="a rendered directory to check (ours or hand-written, same layout)")
    v.add_argument("--json", action="store_true", help="print the problems as JSON")
    sub.add_parser("preflight", help="check a rendered directory for the design's pitfalls", add_help=False)
    for name in (*LAB_COMMANDS, *rollout.COMMANDS):
        sub.add_parser(name, help=f"{name} (see `k3s-bgp-lab {name} --help`)", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "preflight":
        return cmd_preflight(argv[1:])
    if argv and argv[0] in LAB_COMMANDS:
        return lab_cli.main(argv)
    if argv and argv[0] in rollout.COMMANDS:
        return rollout.main(argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed its message
        return EXIT_BAD_INPUT if exc.code else EXIT_OK
    if args.command == "gen":
        return cmd_gen(args.inventory, args.out, args.json)
    if args.command == "validate":
        return cmd_validate(args.inventory, args.dir, args.json)
    raise InputError(f"unknown command {args.command!r}")  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
