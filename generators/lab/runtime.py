"""A running (or to-be-running) lab: names, paths and the one way to reach inside its containers.

Everything that touches a lab address goes through ``exec`` (docker exec into a lab container);
nothing here opens a socket to the lab from the host.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model import Model
from .engine import Engine, ExecResult
from .kinds.client import CA_PATH, NAME as CLIENT
from .kinds.gateway import NAME as GATEWAY

BUILD_ROOT = Path("build") / "lab"


class LabError(RuntimeError):
    """Something in the lab failed; the message says what, and ``details`` carries log lines."""

    def __init__(self, message: str, details: list[str] | None = None):
        super().__init__(message)
        self.details = details or []


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
    def host_state(self) -> Path:
        """What lab-up changed on the host (bridge, iptables rules), so lab-down undoes exactly that."""
        return self.state / "host.json"

    @property
    def clab_file(self) -> Path:
        return self.rendered / "lab.clab.yml"


def lab_paths(name: str, base: Path | None = None) -> LabPaths:
    return LabPaths((base or BUILD_ROOT).resolve() / name)


class LabRuntime:
    def __init__(self, model: Model, engine: Engine | None = None, base: Path | None = None):
        if model.lab is None:
            raise LabError(f"{model.source}: not a lab inventory (no `lab:` section); use topology/lab.yml or add one")
        self.model = model
        self.lab = model.lab
        self.paths = lab_paths(self.lab.name, base)
        self._engine = engine

    # ------------------------------------------------------------------ names
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = Engine()
        return self._engine

    @property
    def name(self) -> str:
        return self.lab.name

    def container(self, node: str) -> str:
        return f"clab-{self.lab.name}-{node}"

    @property
    def nodes(self) -> dict[str, str]:
        return {n.name: str(n.address) for n in self.model.nodes}

    @property
    def vips(self) -> dict[str, str]:
        return {"apiserver": str(self.model.apiserver.address), "traefik": str(self.model.traefik.address)}

    @property
    def apiserver_port(self) -> int:
        return self.model.apiserver.port

    @property
    def dns_name(self) -> str:
        return self.model.apiserver.dns_name

    @property
    def ca_path_in_client(self) -> str:
        return CA_PATH

    @property
    def rendered_dir(self) -> Path:
        return self.paths.rendered

    @property
    def gateway(self) -> str:
        return GATEWAY

    @property
    def client(self) -> str:
        return CLIENT

    # ------------------------------------------------------------------ inside the containers
    def exec(self, node: str, argv: list[str], timeout: float = 30) -> ExecResult:
        return self.engine.exec(self.container(node), argv, timeout=timeout)

    def exec_background(self, node: str, argv: list[str]) -> None:
        """Start ``argv`` detached inside the node (it outlives this call)."""
        api = self.engine.api
        exec_id = api.exec_create(self.container(node), list(argv), stdout=False, stderr=False)["Id"]
        api.exec_start(exec_id, detach=True)

    def put_file(self, node: str, path: str, data: bytes, mode: int = 0o755) -> None:
        self.engine.put_files(self.container(node), {path: data}, mode=mode)

    def vtysh_json(self, command: str, timeout: float = 15) -> Any:
        """Run a `show ... json` command in the gateway's FRR and parse it."""
        res = self.exec(GATEWAY, ["vtysh", "-c", command], timeout=timeout)
        if res.exit_code != 0:
            raise LabError(f"vtysh -c {command!r} on {GATEWAY} failed (exit {res.exit_code}): {res.stderr.strip() or res.stdout.strip()}")
        try:
            return json.loads(res.stdout or "{}")
        except json.JSONDecodeError as exc:
            raise LabError(f"vtysh -c {command!r} did not return JSON: {res.stdout[:200]!r}") from exc

    # ------------------------------------------------------------------ faults (drills)
    LAB_IF = "eth1"  # every node's interface on the switch segment

    def _link_rules(self) -> list[list[str]]:
        return [["INPUT", "-i", self.LAB_IF, "-j", "DROP"], ["OUTPUT", "-o", self.LAB_IF, "-j", "DROP"]]

    def link_down(self, node: str) -> None:
        """Silent power loss: drop every packet in and out of the node's lab interface, inside the node.

        No FIN, no RST, no NOTIFICATION reaches the gateway or the client. (tc would be closer to a dead
        NIC, but this kernel has no tc classifiers; iptables in the node's namespace does the same for IP.)
        """
        for rule in self._link_rules():
            if self.exec(node, ["iptables", "-C", *rule]).exit_code != 0:
                res = self.exec(node, ["iptables", "-I", *rule])
                if res.exit_code != 0:
                    raise LabError(f"{node}: iptables -I {' '.join(rule)} failed: {res.stderr.strip()}")

    def link_up(self, node: str) -> None:
        """Undo link_down (idempotent)."""
        for rule in self._link_rules():
            while self.exec(node, ["iptables", "-C", *rule]).exit_code == 0:
                self.exec(node, ["iptables", "-D", *rule])

    def _twin(self):
        from .kinds import twin_runtime

        if self.lab.fidelity != "twin":
            raise LabError(f"speaker/apiserver faults are implemented for the twin fidelity, not {self.lab.fidelity!r}")
        return twin_runtime

    def signal_speaker(self, node: str, sig: int) -> None:
        self._twin().signal_speaker(self, node, sig)

    def start_speaker(self, node: str) -> None:
        self._twin().start_speaker(self, node)

    def stop_speaker_graceful(self, node: str) -> None:
        self._twin().stop_speaker_graceful(self, node)

    def stop_apiserver(self, node: str) -> None:
        self._twin().stop_apiserver(self, node)

    def start_apiserver(self, node: str) -> None:
        self._twin().start_apiserver(self, node)

    def restart_gateway_frr(self, timeout: float = 60) -> None:
        """Restart FRR on the gateway; return once vtysh answers again."""
        res = self.exec(GATEWAY, ["/usr/lib/frr/frrinit.sh", "stop"], timeout=timeout)
        if res.exit_code != 0:
            raise LabError(f"FRR stop on {GATEWAY} failed (exit {res.exit_code})", res.stderr.splitlines()[-10:])
        # detached: the daemons keep the exec's output streams open, so a waiting exec would never end
        self.exec_background(GATEWAY, ["/usr/lib/frr/frrinit.sh", "start"])
        deadline = time.monotonic() + timeout
        while self.exec(GATEWAY, ["vtysh", "-c", "show bgp summary json"], timeout=10).exit_code != 0:
            if time.monotonic() > deadline:
                raise LabError(f"FRR on {GATEWAY} did not answer within {timeout:g} s after a restart")
            time.sleep(0.2)  # poll interval of the condition above

    last_verify_failures: tuple[str, ...] = ()

    def verify(self) -> bool:
        """The `invoke verify` checks; the failing ones stay in ``last_verify_failures``."""
        from ..checks.verify import collect, run_checks
        from .expect import expectation_for

        exp = expectation_for(self)
        results = run_checks(collect(self, exp), exp)
        self.last_verify_failures = tuple(f"{r.name}: {r.summary}" for r in results if not r.ok)
        return not self.last_verify_failures

    def running_containers(self) -> dict[str, str]:
        """node name -> container status, for this lab's containers."""
        out = {}
        for info in self.engine.containers({"containerlab": self.lab.name}):
            node = info.name.removeprefix(f"clab-{self.lab.name}-")
            out[node] = info.state
        return out
