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


# ----------------------------------------------------------------------------- faults (drills)
TWINRUN = "/opt/twin/twinrun.py"
PID_DIR = "/run/twin"
_SIGNAL = "import os, sys; os.kill(int(open(sys.argv[1]).read().strip()), int(sys.argv[2]))"


def _node(lab: "LabRuntime", node: str):
    from ..expect import twin_plan

    plan = twin_plan(lab)
    if node not in plan.nodes:
        raise KeyError(f"no twin node {node!r}; nodes: {', '.join(plan.nodes)}")
    return plan.nodes[node]


def _speaker(lab: "LabRuntime", node: str) -> str:
    names = [p for p in _node(lab, node).processes() if p.startswith("gobgpd-")]
    if not names:
        raise KeyError(f"{node} runs no BGP speaker (its labels match no CiliumBGPClusterConfig)")
    return names[0]


def _run_all(lab: "LabRuntime", node: str, cmds: list[list[str]]) -> None:
    from ..runtime import LabError

    for argv in cmds:
        res = lab.exec(node, argv, timeout=60)
        if res.exit_code != 0:
            raise LabError(f"{node}: `{' '.join(argv[:5])}` failed (exit {res.exit_code})", (res.stderr or res.stdout).splitlines()[-10:])


def _start(lab: "LabRuntime", node: str, process: str) -> None:
    """Start one process the way lab-up does (a speaker also re-injects its routes)."""
    cmds = [c for c in _node(lab, node).restart_commands(process) if c[:4] != ["python3", TWINRUN, "stop", process]]
    _run_all(lab, node, cmds)


def signal_speaker(lab: "LabRuntime", node: str, sig: int) -> None:
    _run_all(lab, node, [["python3", "-c", _SIGNAL, f"{PID_DIR}/{_speaker(lab, node)}.pid", str(int(sig))]])


def start_speaker(lab: "LabRuntime", node: str) -> None:
    _start(lab, node, _speaker(lab, node))


def stop_speaker_graceful(lab: "LabRuntime", node: str) -> None:
    _run_all(lab, node, [["python3", TWINRUN, "stop", _speaker(lab, node)]])


def stop_apiserver(lab: "LabRuntime", node: str) -> None:
    _run_all(lab, node, [["python3", TWINRUN, "stop", "apiserver"]])


def start_apiserver(lab: "LabRuntime", node: str) -> None:
    _start(lab, node, "apiserver")
