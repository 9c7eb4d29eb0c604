"""Host-side wiring the lab needs: the switch bridge and the FORWARD accept rule for it.

Docker sets the FORWARD policy to DROP and, with br_netfilter, frames bridged between two lab
veths traverse iptables: without an accept rule for the bridge, BGP sessions sit in Active.
(docs/FACTS.md#machine.) Every change is recorded so that lab-down undoes exactly what lab-up did, and nothing else.
"""
from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from generators.errors import EnvironmentProblem

Run = Callable[[list[str]], subprocess.CompletedProcess]


def run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


class HostNetError(EnvironmentProblem):
    pass


@dataclass
class HostState:
    """What a lab changed on the host, kept on the host (``generators.lab.state``), not only in the checkout.

    Written before each change (write-ahead), so that an interrupted or killed lab-up leaves a record
    lab-down can act on.
    """

    bridge: str = ""
    bridge_created: bool = False
    rules: list[list[str]] = field(default_factory=list)  # iptables rule specs we inserted (chain first)
    lab: str = ""  # the lab's name
    owner: dict = field(default_factory=dict)  # generators.lab.state.Owner as a dict
    lab_dir: str = ""  # the lab's directory (rendered files, containerlab's state)
    former_lab_dirs: list[str] = field(default_factory=list)  # of owners it was taken over from
    ports: list[str] = field(default_factory=list)  # host ends of the nodes' veths that containerlab makes for us

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "HostState":
        if not path.is_file():
            return cls()
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in json.loads(path.read_text()).items() if k in known})


def forward_rule(bridge: str, chain: str) -> list[str]:
    return [chain, "-i", bridge, "-o", bridge, "-j", "ACCEPT"]


def _check(res: subprocess.CompletedProcess, what: str) -> None:
    if res.returncode != 0:
        raise HostNetError(f"{what} failed (exit {res.returncode}): {(res.stderr or res.stdout).strip()}")


def link_exists(name: str, runner: Run = run) -> bool:
    """A host interface (the bridge, a veth's host end) of that name exists."""
    return runner(["ip", "link", "show", "dev", name]).returncode == 0


def bridge_ports(bridge: str, runner: Run = run) -> list[str]:
    """Interfaces attached to ``bridge`` on the host."""
    res = runner(["ip", "-j", "link", "show", "master", bridge])
    if res.returncode != 0 or not (res.stdout or "").strip():
        return []
    return sorted(str(link.get("ifname", "")) for link in json.loads(res.stdout))


def ensure_bridge_and_rules(bridge: str, state: HostState, log: Callable[[str], None], runner: Run = run,
                            own_ports: frozenset[str] = frozenset(),
                            persist: Callable[[], None] = lambda: None) -> list[str]:
    """Create the bridge and its accept rule when missing; returns what changed (empty: nothing).

    A bridge that already carries ports of another lab is refused: two labs on one segment share
    addresses and would answer each other's ARP and BGP.
    """
    foreign = [p for p in bridge_ports(bridge, runner) if p not in own_ports]
    if foreign:
        raise HostNetError(f"bridge {bridge} already carries ports of another lab ({', '.join(foreign)}); "
                           f"give this lab its own `lab.bridge`, or take the other lab down first")
    changed: list[str] = []
    state.bridge = bridge
    if not link_exists(bridge, runner):
        state.bridge_created = True
        persist()  # recorded before it exists: a kill between the two leaves nothing lab-down cannot find
        _check(runner(["ip", "link", "add", "name", bridge, "type", "bridge"]), f"creating bridge {bridge}")
        changed.append(f"created bridge {bridge}")
    _check(runner(["ip", "link", "set", "dev", bridge, "up"]), f"setting {bridge} up")
    chain = "DOCKER-USER" if runner(["iptables", "-n", "-L", "DOCKER-USER"]).returncode == 0 else "FORWARD"
    rule = forward_rule(bridge, chain)
    if runner(["iptables", "-C", *rule]).returncode != 0:
        if rule not in state.rules:
            state.rules.append(rule)
            persist()
        _check(runner(["iptables", "-I", *rule]), f"adding iptables rule {' '.join(rule)}")
        changed.append(f"iptables -I {' '.join(rule)}")
    for line in changed:
        log(f"  host: {line}")
    return changed


def remove_ports(ports: list[str], why: str, log: Callable[[str], None], runner: Run = run) -> list[str]:
    """Delete the host ends of the lab's veths that are still there (deleting one end deletes the pair).

    A removed container's veth normally goes with its network namespace, but the kernel keeps a namespace
    while a socket in it still lives (docs/FACTS.md#machine), and the next deploy then finds the name taken.
    """
    done = []
    for port in ports:
        if link_exists(port, runner):
            _check(runner(["ip", "link", "del", "dev", port]), f"deleting host port {port}")
            done.append(f"deleted host port {port} ({why})")
    for line in done:
        log(f"  host: {line}")
    return done


def attach_ports(bridge: str, ports: list[str], log: Callable[[str], None], runner: Run = run) -> list[str]:
    """Put the host ends of the nodes' eth1 veths on the switch bridge, up (idempotent); returns what changed."""
    attached = set(bridge_ports(bridge, runner))
    changed = []
    for port in ports:
        if port not in attached:
            _check(runner(["ip", "link", "set", "dev", port, "master", bridge]), f"attaching {port} to {bridge}")
            changed.append(f"attached {port} to {bridge}")
        _check(runner(["ip", "link", "set", "dev", port, "up"]), f"setting {port} up")
    for line in changed:
        log(f"  host: {line}")
    return changed


CLAB_COMMENT = "set by containerlab"


def containerlab_bridge_rules(bridge: str, runner: Run = run) -> list[list[str]]:
    """FORWARD rules containerlab added for ``bridge`` (as rule specs without -A)."""
    res = runner(["iptables", "-S", "FORWARD"])
    out = []
    for line in (res.stdout or "").splitlines():
        words = shlex.split(line)
        if words[:2] != ["-A", "FORWARD"] or CLAB_COMMENT not in words:
            continue
        pairs = list(zip(words, words[1:], strict=False))
        if ("-i", bridge) in pairs or ("-o", bridge) in pairs:
            out.append(words[1:])
    return out


def teardown(state: HostState, log: Callable[[str], None], runner: Run = run) -> list[str]:
    """Undo what ``state`` records. Missing things are fine (idempotent)."""
    ports = remove_ports(state.ports, "its container is gone", log, runner)  # logs its own lines
    done: list[str] = []
    for rule in state.rules:
        while runner(["iptables", "-C", *rule]).returncode == 0:
            _check(runner(["iptables", "-D", *rule]), f"removing iptables rule {' '.join(rule)}")
            done.append(f"iptables -D {' '.join(rule)}")
    if state.bridge and state.bridge_created:
        # containerlab's bridge kind adds FORWARD accept rules for the bridge and leaves them on destroy
        for rule in containerlab_bridge_rules(state.bridge, runner):
            _check(runner(["iptables", "-D", *rule]), f"removing iptables rule {' '.join(rule)}")
            done.append(f"iptables -D {' '.join(rule)}")
        if link_exists(state.bridge, runner):
            _check(runner(["ip", "link", "del", "dev", state.bridge]), f"deleting bridge {state.bridge}")
            done.append(f"deleted bridge {state.bridge}")
    for line in done:
        log(f"  host: {line}")
    return ports + done
