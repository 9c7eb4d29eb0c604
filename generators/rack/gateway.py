"""The gateway step: FRR's ``router bgp`` block brought to exactly the rendered one.

Plan: ``show running-config`` against the rendered ``frr/frr.conf`` (:mod:`generators.rack.frrdiff`).
Apply, on the gateway itself:

1. both files (the rendered one, and the ``no`` lines for what it no longer has) are checked by FRR with
   ``vtysh --dryrun -f``; a file FRR refuses stops here, with FRR's own error line, and nothing changed;
2. ``vtysh -f`` the removals, then the rendered file, then ``write memory``;
3. the running config is read again and must now equal the rendered block; if a command failed half way,
   the block is brought back to what it was (the same procedure, towards the old block), and the step fails.

Waiting for the sessions is the caller's (it knows which nodes run). Used by ``rack.apply`` over SSH and by
the lab's gateway kind over ``docker exec`` alike: both hand in a :class:`~generators.rack.shell.Shell`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Callable

from ..errors import CheckFailed
from .frrdiff import FrrDiff, diff_bgp, removal_script
from .shell import Shell, must, write_file

SHOW_RUNNING = "vtysh -c 'show running-config'"
Log = Callable[[str], None]


class FrrRefused(CheckFailed):
    """FRR refused a file or a command (exit 1); the message carries FRR's own lines."""


@dataclass
class GatewayPlan:
    live: str  # show running-config, as read
    wanted: str  # the rendered frr.conf
    diff: FrrDiff

    @property
    def changes(self) -> int:
        return self.diff.changes

    def to_json(self) -> dict:
        return {
            "router": self.diff.wanted_title,
            "replaces_router": self.diff.replaces_router and self.diff.live_title is not None,
            "added": [line.show() for line in self.diff.added],
            "removed": [line.show() for line in self.diff.removed],
        }


def read_running(shell: Shell) -> str:
    return must(shell, SHOW_RUNNING, "show running-config", timeout=30)


def plan_gateway(shell: Shell, wanted: str) -> GatewayPlan:
    live = read_running(shell)
    return GatewayPlan(live, wanted, diff_bgp(live, wanted))


def _frr_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()][-6:]


def _dryrun(shell: Shell, path: str, what: str) -> None:
    res = shell.run(f"vtysh --dryrun -f {shlex.quote(path)}", timeout=60)
    if not res.ok:
        raise FrrRefused(f"{shell.name}: FRR refuses {what} (vtysh --dryrun exit {res.exit_code}); nothing was "
                         "changed", _frr_lines(res.stdout + "\n" + res.stderr))


def _vtysh_file(shell: Shell, path: str) -> list[str]:
    """Apply a file; FRR's complaints (vtysh exits non-zero when a command fails)."""
    res = shell.run(f"vtysh -f {shlex.quote(path)}", timeout=120)
    return [] if res.ok else _frr_lines(res.stdout + "\n" + res.stderr) or [f"vtysh -f exit {res.exit_code}"]


def _converge_once(shell: Shell, workdir: str, plan: GatewayPlan, log: Log) -> list[str]:
    """Removals then the wanted file, then write memory. FRR's complaints (empty when it took everything)."""
    removal = removal_script(plan.diff, plan.live, plan.wanted)
    files = {"frr.conf": plan.wanted}
    if removal:
        files["remove.conf"] = removal
    for name, text in files.items():
        write_file(shell, f"{workdir}/{name}", text.encode(), mode=0o600)
    for name in files:
        _dryrun(shell, f"{workdir}/{name}", "the rendered frr.conf" if name == "frr.conf" else
                "the removal of lines the rendered frr.conf no longer has")
    complaints: list[str] = []
    if removal:
        log(f"  {shell.name}: removing {len(plan.diff.removed)} line(s) the rendered frr.conf no longer has")
        complaints += _vtysh_file(shell, f"{workdir}/remove.conf")
    if not complaints:
        log(f"  {shell.name}: vtysh -f frr.conf ({len(plan.diff.added)} line(s) to add)")
        complaints += _vtysh_file(shell, f"{workdir}/frr.conf")
    return complaints


def apply_gateway(shell: Shell, plan: GatewayPlan, log: Log = print) -> list[str]:
    """Bring the gateway to ``plan.wanted``'s block (nothing when the plan has no change). What changed."""
    if not plan.changes:
        return []
    workdir = must(shell, "mktemp -d /tmp/k3s-bgp-lab-frr.XXXXXX", "making a work directory").strip()
    try:
        complaints = _converge_once(shell, workdir, plan, log)
        after = plan_gateway(shell, plan.wanted)
        if complaints or after.changes:
            back = plan_gateway(shell, plan.live)  # towards the block as it was
            undo = _converge_once(shell, workdir, back, log) if back.changes else []
            restored = not undo and not plan_gateway(shell, plan.live).changes
            details = complaints or [f"FRR keeps it differently: {x}" for x in after.diff.lines()]
            raise FrrRefused(f"{shell.name}: FRR did not take the rendered router bgp block; "
                             + ("the block as it was is restored" if restored else
                                "restoring the block as it was failed too: check `show running-config`"),
                             details + undo)
        must(shell, "vtysh -c 'write memory'", "write memory", timeout=60)
    finally:
        shell.run(f"rm -rf {shlex.quote(workdir)}", timeout=30)
    return [f"{shell.name}: router bgp block now as rendered (+{len(plan.diff.added)} -{len(plan.diff.removed)}), "
            "saved with write memory"]
