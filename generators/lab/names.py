"""A lab's names and paths: the one validator for lab names, container names, host port names, directories.

Nothing here touches the machine. Everything that is derived from a user's input and later deleted
(``lab-down``) is derived here, and only from a validated name.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from generators.errors import InputError

BUILD_ROOT = Path("build") / "lab"
# A lab name becomes part of Docker container names, a directory name and containerlab's lab name:
# a lowercase DNS label (the same grammar as `lab.name` in an inventory).
LAB_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
LAB_NAME_RULE = "a lowercase DNS label: a-z, 0-9 and '-', starting and ending with a letter or digit, at most 63"


class LabNameError(InputError):
    """A lab name that is not a lowercase DNS label."""


def validate_lab_name(name: object, where: str = "--name") -> str:
    """The name, when it is a valid lab name; LabNameError (exit 2) otherwise. Used by every entry point."""
    if not isinstance(name, str) or not LAB_NAME.match(name):
        raise LabNameError(f"{where} {name!r} is not a valid lab name: it must be {LAB_NAME_RULE} characters "
                           "(it names containers, a directory and host resources); e.g. ber1-lab")
    return name


def container_name(lab: str, node: str) -> str:
    """containerlab's name for ``node`` of lab ``lab``."""
    return f"clab-{lab}-{node}"


def bridge_port(lab_name: str, node: str) -> str:
    """Host-side name of ``node``'s port on the switch bridge: unique per lab, at most 15 characters.

    Host interface names are global, so two labs on one host must not both call theirs ``ucg-eth1``.
    """
    tag = hashlib.sha256(lab_name.encode()).hexdigest()[:4]
    return f"{node[:10]}-{tag}"


@dataclass(frozen=True)
class LabPaths:
    root: Path

    @property
    def rendered(self) -> Path:
        return self.root / "rendered"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def ssh(self) -> Path:
        """The lab's SSH client key (``id_ed25519``), its machines' host keys and ``known_hosts`` (0700)."""
        return self.state / "ssh"

    @property
    def host_state(self) -> Path:
        """What lab-up changed on the host (bridge, iptables rules), so lab-down undoes exactly that."""
        return self.state / "host.json"

    @property
    def clab_file(self) -> Path:
        return self.rendered / "lab.clab.yml"


def lab_paths(name: str, base: Path | None = None) -> LabPaths:
    """The lab's directory under the project's lab root; the name is validated first."""
    return LabPaths((base or BUILD_ROOT).resolve() / validate_lab_name(name))
