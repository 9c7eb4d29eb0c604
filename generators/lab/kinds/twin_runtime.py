"""Apply a twin plan to the running containers: copy files, run the idempotent start commands."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ...twin.plan import TWIN_LOG

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import LabRuntime

LOG_FILES = [f"{TWIN_LOG}/gobgpd-k3s-bgp.log", f"{TWIN_LOG}/haproxy.log", f"{TWIN_LOG}/apiserver.log"]


def configure_twin(lab: "LabRuntime") -> list[str]:
    from ..expect import twin_plan
    from ..runtime import LabError

    plan = twin_plan(lab)
    changed: list[str] = []
    for name, node in plan.nodes.items():
        files = node.files(lab.paths.pki)
        current = _current_files(lab, name, list(files))
        stale = {p: b for p, b in files.items() if current.get(p) != b}
        if stale:
            lab.engine.put_files(lab.container(name), stale, mode=0o644)
            changed.append(f"{name}: wrote {len(stale)} file(s)")
        for argv in node.start_commands():
            res = lab.exec(name, argv, timeout=60)
            if res.exit_code != 0:
                raise LabError(f"{name}: `{' '.join(argv[:6])}...` failed (exit {res.exit_code})",
                               (res.stderr or res.stdout).strip().splitlines()[-15:])
            if "started" in res.stdout:
                changed.append(f"{name}: {res.stdout.strip().splitlines()[-1]}")
    return changed


def _current_files(lab: "LabRuntime", node: str, paths: list[str]) -> dict[str, bytes]:
    """What the container holds now at ``paths`` (missing files are left out)."""
    out: dict[str, bytes] = {}
    for path in paths:
        res = lab.exec(node, ["cat", path], timeout=10)
        if res.exit_code == 0:
            out[path] = res.stdout.encode()
    return out
