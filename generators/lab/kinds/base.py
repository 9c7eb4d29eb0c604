"""The interface every node kind implements, and the access to the running lab a kind is given.

A kind owns its image recipe (Debian suite, packages, binaries), its containerlab node definitions, how
its nodes are configured after deploy, and, for the cluster kinds, the drill's speaker and apiserver
faults. It never imports the runtime that drives it (as containerlab's ``nodes/<kind>/`` do not): the
runtime hands it a :class:`NodeAccess`.
"""
from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from typing import Callable, Mapping, Protocol

from ... import pki
from ...errors import LabError
from ...model import Model
from ...rack.shell import Result
from ..engine import ExecResult
from ..images import ImageSpec
from ..names import LabPaths


class NodeAccess(Protocol):
    """What a kind may do to the running lab (implemented by ``generators.lab.access.LabAccess``)."""

    @property
    def model(self) -> Model: ...

    @property
    def paths(self) -> LabPaths: ...

    def exec(self, node: str, argv: list[str], timeout: float = 30) -> ExecResult: ...

    def exec_read(self, node: str, argv: list[str], timeout: float = 30, attempts: int = 3) -> ExecResult:
        """``exec`` for a command that only reads (safe to run again)."""
        ...

    def exec_background(self, node: str, argv: list[str]) -> None: ...

    def put_files(self, node: str, files: Mapping[str, bytes], mode: int = 0o644,
                  dir_modes: Mapping[str, int] | None = None) -> None: ...


class NodeKind(ABC):
    """How one kind of lab node is built (image), wired (containerlab node) and configured (after deploy)."""

    role: str  # "gateway", "client" or "cluster"

    @abstractmethod
    def image_spec(self, model: Model) -> ImageSpec:
        """The image the kind's containers run."""

    @abstractmethod
    def clab_nodes(self, model: Model, image: str) -> dict[str, dict]:
        """containerlab node definitions, by node name."""

    @abstractmethod
    def node_names(self, model: Model) -> list[str]:
        """The lab nodes of this kind."""

    def prepare(self, model: Model, log: Callable[[str], None]) -> list[str]:
        """Build what the kind's image needs before it is built (binaries). Idempotent; returns what changed."""
        return []

    def configure(self, access: NodeAccess) -> list[str]:
        """Bring the kind's nodes to their configured state after deploy. Idempotent; returns what changed."""
        return []

    def log_files(self) -> list[str]:
        """Log files inside the containers worth showing when something fails."""
        return []


class ClusterKind(NodeKind):
    """The cluster nodes' kind: the lab's fidelity. It also carries the drill's faults on its own processes."""

    role = "cluster"
    fidelity: str
    # Whether stop_speaker_graceful ends the sessions with a BGP Cease (GoBGP's own stop does), or just
    # closes them (a Cilium agent stop: Cilium keeps its BGP servers, docs/FACTS.md#graceful-restart).
    graceful_stop_sends_cease: bool = True

    def node_names(self, model: Model) -> list[str]:
        return [n.name for n in model.nodes]

    @abstractmethod
    def signal_speaker(self, access: NodeAccess, node: str, sig: int) -> None:
        """Send ``sig`` to the node's BGP speaker."""

    @abstractmethod
    def start_speaker(self, access: NodeAccess, node: str) -> None:
        """Start the node's BGP speaker the way lab-up does."""

    @abstractmethod
    def stop_speaker_graceful(self, access: NodeAccess, node: str) -> None:
        """Stop the speaker the way a drained node or a rolling agent restart does."""

    @abstractmethod
    def stop_apiserver(self, access: NodeAccess, node: str) -> None:
        """Stop only the node's apiserver."""

    @abstractmethod
    def start_apiserver(self, access: NodeAccess, node: str) -> None:
        """Start the node's apiserver again."""


class ExecShell:
    """A rollout :class:`~generators.rack.shell.Shell` over ``docker exec``: lab-up brings a lab machine to its
    files with the very steps ``rack.apply`` runs over SSH (stdin goes through a 0600 file in the machine)."""

    def __init__(self, access: NodeAccess, node: str):
        self.access, self.node, self.name = access, node, node

    def run(self, command: str, stdin: bytes | None = None, timeout: float = 60) -> Result:
        if stdin is not None:
            path = f"/tmp/.k3s-bgp-lab-stdin-{secrets.token_hex(6)}"
            self.access.put_files(self.node, {path: stdin}, mode=0o600)
            command = f"({command}) < {path}; rc=$?; rm -f {path}; exit $rc"
        return self.access.exec(self.node, ["sh", "-c", command], timeout=timeout)


def command_failed(node: str, argv: list[str], exit_code: int, output: str) -> LabError:
    """The error for a command that failed in a machine: which machine, which command, its exit, its output's tail."""
    shown = " ".join(argv[:6]) + (" ..." if len(argv) > 6 else "")
    return LabError(f"{node}: `{shown}` failed (exit {exit_code})", output.strip().splitlines()[-15:])


def run_checked(access: NodeAccess, node: str, argv: list[str], timeout: float = 90) -> str:
    """Run one command in a machine; its stdout, or :func:`command_failed`."""
    res = access.exec(node, argv, timeout=timeout)
    if res.exit_code != 0:
        raise command_failed(node, argv, res.exit_code, res.stderr or res.stdout)
    return res.stdout


def put_changed(access: NodeAccess, node: str, public: Mapping[str, bytes], secret: Mapping[str, bytes],
                secret_dirs: Mapping[str, int] | None = None) -> list[str]:
    """Copy the files whose content differs in the machine, and the secrets whose mode (or whose directory's
    mode) is not ``SECRET_MODE`` / ``secret_dirs``; one exec compares them all. The paths copied."""
    paths, dirs = [*public, *secret], sorted(secret_dirs or {})
    script = ('for f in "$@"; do if [ -d "$f" ]; then echo "$(stat -c %a "$f") - $f"; elif [ -f "$f" ]; then '
              'echo "$(stat -c %a "$f") $(sha256sum "$f" | cut -c1-64) $f"; fi; done; true')
    res = access.exec(node, ["sh", "-c", script, "sh", *paths, *dirs], timeout=60)
    if res.exit_code != 0:
        raise LabError(f"{node}: cannot list its files (exit {res.exit_code})", res.stderr.strip().splitlines()[-5:])
    have = {parts[2]: (parts[0], parts[1]) for parts in (line.split(" ", 2) for line in res.stdout.splitlines())
            if len(parts) == 3}

    def stale(files: Mapping[str, bytes], mode: str | None) -> dict[str, bytes]:
        return {p: d for p, d in files.items() if have.get(p) is None or have[p][1] != pki.sha256_hex(d)
                or (mode is not None and have[p][0] != mode)}

    other, private = stale(public, None), stale(secret, f"{pki.SECRET_MODE:o}")
    if any(have.get(d, ("", ""))[0] != f"{m:o}" for d, m in (secret_dirs or {}).items()):
        private = dict(secret)  # a loosened directory: write the secrets again, which sets its mode
    if other:
        access.put_files(node, other, mode=0o644)
    if private:
        access.put_files(node, private, mode=pki.SECRET_MODE, dir_modes=secret_dirs)
    return sorted([*other, *private])


NET_CAPS = ["NET_ADMIN", "NET_RAW"]
IDLE_CMD = "/usr/bin/tini -- sleep infinity"  # tini reaps orphans as PID 1


def linux_node(image: str, exec_lines: list[str], caps: list[str] | None = None, **extra: object) -> dict:
    """A containerlab `linux` node that idles until configured.

    Docker never restarts it (it would lose its links). Not privileged: containerlab's default, but
    runc cannot grant every capability on hosts whose bounding set lacks some (seen: no
    CAP_SYS_RESOURCE), so each kind adds exactly the capabilities it needs.
    """
    node = {"kind": "linux", "image": image, "restart-policy": "no", "privileged": False,
            "cap-add": list(caps or NET_CAPS), "cmd": IDLE_CMD, "exec": exec_lines}
    node.update(extra)
    return node
