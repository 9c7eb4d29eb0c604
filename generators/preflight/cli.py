"""``preflight [--dir DIR | --inventory FILE] [--json] [--strict] [--frr-version V]``.

Exit codes: 0 clean (warnings allowed unless --strict), 1 errors (or warnings with --strict),
2 usage error or unreadable input.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from generators.errors import EXIT_BAD_INPUT as EXIT_USAGE
from generators.errors import InputError, InventoryError
from generators.pipeline import render_inventory
from generators.readback.rendered import RenderedError

from .findings import Report
from .run import run


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise _UsageError(f"preflight: {message}")


class _UsageError(InputError):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="preflight",
        description="Check rendered configs (k3s, Cilium, FRR) for the design's pitfalls before they reach the rack.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dir", type=Path, help="a rendered directory (invoke gen output or your own files)")
    source.add_argument(
        "--inventory", type=Path, help="an inventory: render it to a temporary directory and check that"
    )
    parser.add_argument("--json", action="store_true", help="print the stable JSON report (README.md)")
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.add_argument(
        "--frr-version",
        help="the gateway's FRR version, e.g. 8.4.4 (default: frr.conf's `frr version` line, else assume 8.3 or later)",
    )
    return parser


def main(argv: list[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        print(exc, file=err)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    try:
        if args.dir is not None:
            report = _check_dir(args.dir, args.frr_version, str(args.dir))
        else:
            report = _check_inventory(args.inventory, args.frr_version)
    except _UsageError as exc:
        print(exc, file=err)
        return EXIT_USAGE
    print(report.to_json() if args.json else report.render_text(), file=out)
    return report.exit_code(strict=args.strict)


def _check_dir(root: Path, frr_version: str | None, source: str) -> Report:
    if not root.is_dir():
        raise _UsageError(
            f"preflight: {root} is not a directory; run `invoke gen --out {root}` first, "
            "or point --dir at your config directory"
        )
    try:
        report = run(root, frr_version=frr_version, source=source)
    except (RenderedError, OSError, UnicodeDecodeError) as exc:
        raise _UsageError(f"preflight: cannot read {root}: {exc}") from exc
    if not report.files:
        raise _UsageError(
            f"preflight: {root} holds no file of the rendered layout (frr/frr.conf, "
            "k3s/<node>/config.yaml, cilium/*.yaml, platform/values.yaml, apps/); "
            "is this the right directory?"
        )
    return report


def _check_inventory(path: Path, frr_version: str | None) -> Report:
    if not path.is_file():
        raise _UsageError(f"preflight: inventory {path} does not exist")
    try:
        files = render_inventory(str(path))
    except InventoryError as exc:
        raise _UsageError(exc.render()) from exc
    with tempfile.TemporaryDirectory(prefix="preflight-") as tmp:
        for rel, text in files.items():
            target = Path(tmp) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        return _check_dir(Path(tmp), frr_version, str(path))


if __name__ == "__main__":
    sys.exit(main())
