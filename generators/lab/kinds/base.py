"""The interface every node kind implements, and the access to the running lab a kind is given.

A kind owns its image recipe (Debian suite, packages, binaries), its containerlab node definitions, how
its nodes are configured after deploy, and, for the cluster kinds, the drill's speaker and apiserver
faults. It never imports the runtime that drives it (as containerlab's ``nodes/<kind>/`` do not): the
runtime hands it a :class:`NodeAccess`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Mapping, Protocol

from ...model import Model
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
