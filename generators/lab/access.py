"""Access to a running (or to-be-running) lab: its model, names and paths, and the one way inside its containers.

Everything that touches a lab address goes through ``exec`` (docker exec into a lab container); nothing
here opens a socket to the lab from the host. Faults and verify are in ``faults.py``.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..cluster.client import ClusterTarget, api_client
from ..errors import CheckFailed, InputError, LabError
from ..model import Model
from ..pki import CA_CERT
from .engine import Engine, ExecResult, ExecStreamError
from .kinds.cilium import ADMIN_TOKEN
from .kinds.client import CA_PATH, RELAY_DIR
from .kinds.client import NAME as CLIENT
from .kinds.gateway import NAME as GATEWAY
from .names import LabPaths, container_name, lab_paths, validate_lab_name
from .tunnel import ExecTunnel


class LabNotRunning(CheckFailed):
    """A command that needs the running lab, on a lab that is not up (exit 1)."""


class NotALabInventory(InputError):
    """An inventory without a ``lab:`` section given to a lab command."""


class LabAccess:
    """Implements ``kinds.base.NodeAccess`` and ``checks.verify.LabTarget``."""

    def __init__(self, model: Model, engine: Engine | None = None, base: Path | None = None):
        if model.lab is None:
            raise NotALabInventory(f"{model.source}: not a lab inventory (no `lab:` section); lab commands need one, "
                                   "e.g. topology/lab.yml, or add a `lab:` section that includes your rack file")
        self.model = model
        self.lab = model.lab
        self.paths: LabPaths = lab_paths(validate_lab_name(self.lab.name, "lab.name"), base)
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

    @property
    def fidelity(self) -> str:
        return self.lab.fidelity

    def container(self, node: str) -> str:
        return container_name(self.lab.name, node)

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

    def exec_read(self, node: str, argv: list[str], timeout: float = 30, attempts: int = 3) -> ExecResult:
        """``exec`` for a command that only reads: run again when Docker's client lost its output."""
        for attempt in range(attempts):
            try:
                return self.exec(node, argv, timeout=timeout)
            except ExecStreamError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def exec_background(self, node: str, argv: list[str]) -> None:
        """Start ``argv`` detached inside the node (it outlives this call)."""
        api = self.engine.api
        exec_id = api.exec_create(self.container(node), list(argv), stdout=False, stderr=False)["Id"]
        api.exec_start(exec_id, detach=True)

    def put_file(self, node: str, path: str, data: bytes, mode: int = 0o755) -> None:
        self.engine.put_files(self.container(node), {path: data}, mode=mode)

    def put_files(self, node: str, files: Mapping[str, bytes], mode: int = 0o644,
                  dir_modes: Mapping[str, int] | None = None) -> None:
        if files or dir_modes:
            self.engine.put_files(self.container(node), files, mode=mode, dir_modes=dir_modes)

    def vtysh_json(self, command: str, timeout: float = 15) -> Any:
        """Run a `show ... json` command in the gateway's FRR and parse it."""
        res = self.exec_read(GATEWAY, ["vtysh", "-c", command], timeout=timeout)
        if res.exit_code != 0:
            raise LabError(f"vtysh -c {command!r} on {GATEWAY} failed (exit {res.exit_code}): "
                           f"{res.stderr.strip() or res.stdout.strip()}")
        try:
            return json.loads(res.stdout or "{}")
        except json.JSONDecodeError as exc:
            raise LabError(f"vtysh -c {command!r} did not return JSON: {res.stdout[:200]!r}") from exc

    @contextmanager
    def kube(self, server: str) -> Iterator[Any]:
        """A Kubernetes API client for ``server`` (e.g. ``https://10.31.0.218:6443``), reached from the client
        container through an exec tunnel (no host socket to a lab address); TLS verified against the lab CA."""
        relay = f"{RELAY_DIR}/relay.py"

        def argv_for(host: str, port: int) -> list[str]:
            return ["docker", "exec", "-i", self.container(CLIENT), "python3", relay, host, str(port)]

        with ExecTunnel(argv_for) as tunnel:
            target = ClusterTarget(server=server, ca_file=self.paths.pki / CA_CERT,
                                   token_file=self.paths.pki / ADMIN_TOKEN, proxy=tunnel.url)
            client = api_client(target)
            try:
                yield client
            finally:
                client.close()

    def running_containers(self) -> dict[str, str]:
        """node name -> container status, for this lab's containers."""
        out = {}
        for info in self.engine.containers({"containerlab": self.lab.name}):
            node = info.name.removeprefix(f"clab-{self.lab.name}-")
            out[node] = info.state
        return out
