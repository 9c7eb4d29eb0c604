"""The interface every node kind implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from ...model import Model
from ..images import ImageSpec

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import LabRuntime


class NodeKind(ABC):
    """How one kind of lab node is built (image), wired (containerlab node) and configured (after deploy)."""

    role: str  # "gateway", "client" or "cluster"

    @abstractmethod
    def image_spec(self, model: Model) -> ImageSpec:
        """The image the kind's containers run."""

    @abstractmethod
    def clab_nodes(self, model: Model, image: str) -> dict[str, dict]:
        """containerlab node definitions, by node name."""

    def configure(self, lab: "LabRuntime") -> list[str]:
        """Bring the kind's nodes to their configured state after deploy. Idempotent; returns what changed."""
        return []

    def log_files(self) -> list[str]:
        """Log files inside the containers worth showing when something fails."""
        return []


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
