"""Who owns a lab, recorded on the host: survives the deletion of a checkout's ``build/``.

One record per lab name, ``$K3S_BGP_LAB_STATE/labs/<name>.json`` (default ``/var/lib/k3s-bgp-lab``): the
host resources the lab created (bridge, iptables rules; see ``hostnet.HostState``), its owner (the
checkout's lab directory and the inventory it came from) and where its files are. Containers carry the
owner id as a Docker label too (``k3s-bgp-lab.owner``), set through the containerlab topology.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import InputError
from .hostnet import HostState
from .names import BUILD_ROOT, validate_lab_name

STATE_ENV = "K3S_BGP_LAB_STATE"
DEFAULT_STATE_ROOT = Path("/var/lib/k3s-bgp-lab")
MARKER = ".k3s-bgp-lab-lab.json"  # in a lab directory: it was made by lab-up, for this lab name
LABEL_LAB = "k3s-bgp-lab.lab"
LABEL_OWNER = "k3s-bgp-lab.owner"


class LabOwnedElsewhere(InputError):
    """A lab of this name exists and belongs to another checkout or inventory."""


@dataclass(frozen=True)
class Owner:
    lab_dir: str  # the owning checkout's directory for this lab (build/lab/<name>, resolved)
    inventory: str  # the inventory it was brought up from (resolved)

    @property
    def id(self) -> str:
        return hashlib.sha256(f"{self.lab_dir}\0{self.inventory}".encode()).hexdigest()[:12]

    def describe(self) -> str:
        return f"{self.lab_dir} (inventory {self.inventory})"

    @classmethod
    def from_dict(cls, data: dict) -> "Owner | None":
        if not data.get("lab_dir") or not data.get("inventory"):
            return None
        return cls(str(data["lab_dir"]), str(data["inventory"]))

    def to_dict(self) -> dict:
        return {**asdict(self), "id": self.id}


def state_root() -> Path:
    return Path(os.environ.get(STATE_ENV) or DEFAULT_STATE_ROOT)


def record_path(name: str) -> Path:
    return state_root() / "labs" / f"{validate_lab_name(name)}.json"


def load_record(name: str) -> HostState:
    return HostState.load(record_path(name))


def write_marker(lab_dir: Path, name: str, owner: Owner) -> None:
    lab_dir.mkdir(parents=True, exist_ok=True)
    (lab_dir / MARKER).write_text(json.dumps({"lab": name, "owner": owner.to_dict()}, indent=2) + "\n")


def is_our_lab_dir(path: Path, name: str) -> bool:
    """A directory lab-down may delete: named after the lab, directly in a ``build/lab`` root, with our marker."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir() or path.name != name:
        return False
    if path.resolve().parent.parts[-len(BUILD_ROOT.parts) :] != BUILD_ROOT.parts:
        return False
    try:
        marker = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("lab") == name


def remove_lab_dir(path: Path, name: str) -> bool:
    """Delete the lab's directory only when it is ours (see :func:`is_our_lab_dir`); True when removed."""
    if not is_our_lab_dir(path, name):
        return False
    shutil.rmtree(path)
    return True
