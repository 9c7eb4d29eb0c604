"""Command line: the same entry points invoke's tasks call, for people who don't use invoke.

    k3s-bgp-lab gen --inventory topology/rack.yml --out build/rack
    python -m generators gen ...

Exit codes: 0 success, 1 a check failed, 2 bad input (inventory, arguments), 3 environment problem.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from .errors import InventoryError
from .output import OutputError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_ENVIRONMENT = 0, 1, 2, 3


def cmd_gen(inventory: str, out: str, as_json: bool = False) -> int:
    from .pipeline import generate

    try:
        model, path = generate(inventory, out)
    except InventoryError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_BAD_INPUT
    except OutputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    files = json.loads((path / "MANIFEST.json").read_text())["files"]
    if as_json:
        print(json.dumps({"inventory": str(inventory), "out": str(path), "files": files}, indent=2, sort_keys=True))
    else:
        print(f"rendered {len(files)} files for {model.name!r} into {path}")
        for rel in files:
            print(f"  {rel}")
    return EXIT_OK


def cmd_preflight(argv: list[str]) -> int:
    """Preflight reads files only; with --inventory, the gateway's FRR version comes from the model."""
    from . import preflight

    if "--inventory" in argv and "--frr-version" not in argv:
        inventory = argv[argv.index("--inventory") + 1] if argv.index("--inventory") + 1 < len(argv) else None
        if inventory:
            from .model import load_model

            try:
                argv = [*argv, "--frr-version", load_model(inventory).gateway.frr_version]
            except InventoryError as exc:
                print(exc.render(), file=sys.stderr)
                return EXIT_BAD_INPUT
    return preflight.main(argv)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="k3s-bgp-lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("gen", help="render every config of the design from one inventory")
    g.add_argument("--inventory", default="topology/rack.yml", help="inventory file (default: topology/rack.yml)")
    g.add_argument("--out", required=True, help="output directory (replaced atomically)")
    g.add_argument("--json", action="store_true", help="print the file list as JSON")
    sub.add_parser("preflight", help="check a rendered directory for the design's pitfalls", add_help=False)
    for name, helptext in (("lab-up", "bring the lab up"), ("lab-down", "tear the lab down"), ("status", "show the lab"),
                           ("verify", "verify the lab"), ("drill", "run failover drills")):
        sub.add_parser(name, help=helptext, add_help=False)
    return p


def _lab_command(name: str) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        from .lab import cli as lab_cli

        return lab_cli.main([name, *argv])

    return run


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "preflight":
        return cmd_preflight(argv[1:])
    if argv and argv[0] in ("lab-up", "lab-down", "status", "verify", "drill"):
        return _lab_command(argv[0])(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "gen":
        return cmd_gen(args.inventory, args.out, args.json)
    return EXIT_BAD_INPUT  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
