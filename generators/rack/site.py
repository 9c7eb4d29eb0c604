"""Where a rollout goes: the rack itself, or a lab rehearsing it. Both implement :class:`Site`.

The steps (``generators.rack.steps``) only ever talk to a Site: a shell per machine, the cluster's API,
and a few hooks for what differs between real hardware and a lab (how k3s is restarted, how a machine
comes to exist). :class:`RackSite` is the rack: OpenSSH to each machine, the kubeconfig for the API,
``systemctl restart k3s``, helm for Cilium's values. The lab's Site is ``generators.lab.rehearsal``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from ..cluster.client import ClusterTarget, api_client
from ..errors import EnvironmentProblem, InputError
from ..model import Model, Rack, SshTarget
from .shell import Shell, SshShell, must

Log = Callable[[str], None]
APISERVER_PORT = 6443


class Site(Protocol):
    """What the rollout steps may do to the place they roll out to."""

    label: str  # "rack ber1", "lab ber1-lab"
    is_lab: bool
    model: Model

    def targets(self) -> Rack:
        """How each machine and the cluster are reached."""

    def shell(self, target: SshTarget) -> AbstractContextManager[Shell]: ...

    def kube(self) -> AbstractContextManager[Any]:
        """The cluster's API as a user reaches it (the apiserver VIP unless the inventory says otherwise)."""

    def node_kube(self, node: str) -> AbstractContextManager[Any]:
        """One node's own apiserver (its readiness, after a restart)."""

    def machine_exists(self, node: str) -> bool:
        """Whether the machine is there to be configured (a lab creates its machines; a rack has them)."""

    def provision(self, log: Log) -> list[str]:
        """Make every inventory node's machine exist (lab only: the rack's are racked by hand)."""

    def restart_k3s(self, node: str, shell: Shell, log: Log) -> list[str]:
        """Restart k3s on ``node`` so it reads its config.yaml (and joins, if new)."""

    def retire(self, node: str, remaining: list[str], log: Log) -> list[str]:
        """Take ``node`` out of the cluster (its Node, its etcd member); ``remaining`` stay."""

    def live_cilium_values(self) -> dict | None:
        """The values Cilium runs with now; None when they cannot be read (the plan then says how)."""

    def cilium_values_skip(self) -> str | None:
        """Why the cilium-values step does not apply here, or None."""

    def apply_cilium_values(self, values_file: Path, version: str, log: Log) -> list[str]: ...

    def settle(self, log: Log) -> list[str]:
        """After resources or nodes changed: what must follow (the lab's stand-ins); the rack: nothing."""


# ----------------------------------------------------------------------------- the rack
def helm_command(rack: Rack, *args: str) -> list[str]:
    """A helm command line for the rack's cluster (kubeconfig and context from the inventory)."""
    cmd = ["helm", *args]
    if rack.cluster.kubeconfig:
        cmd += ["--kubeconfig", str(Path(rack.cluster.kubeconfig).expanduser())]
    if rack.cluster.context:
        cmd += ["--kube-context", rack.cluster.context]
    return cmd


class RackSite:
    """The rack: OpenSSH to the machines, the kubeconfig to the cluster, helm for Cilium."""

    is_lab = False

    def __init__(self, model: Model):
        assert model.rack is not None
        self.model = model
        self.label = f"rack {model.name}"
        self._rack = model.rack

    def targets(self) -> Rack:
        return self._rack

    @contextmanager
    def shell(self, target: SshTarget) -> Iterator[Shell]:
        with SshShell(target) as sh:
            yield sh

    def _cluster(self, server: str) -> ClusterTarget:
        c = self._rack.cluster
        kubeconfig = c.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config"
        path = Path(kubeconfig).expanduser()
        if not path.is_file():
            raise InputError(f"rack.cluster.kubeconfig: {path} does not exist; give the kubeconfig of the "
                             "cluster (the rack's k3s writes /etc/rancher/k3s/k3s.yaml on each server)")
        return ClusterTarget(server=server, kubeconfig=path, context=c.context)

    @contextmanager
    def kube(self) -> Iterator[Any]:
        server = self._rack.cluster.server or f"https://{self.model.apiserver.address}:{self.model.apiserver.port}"
        client = api_client(self._cluster(server))
        try:
            yield client
        finally:
            client.close()

    @contextmanager
    def node_kube(self, node: str) -> Iterator[Any]:
        address = next(str(n.address) for n in self.model.nodes if n.name == node)
        client = api_client(self._cluster(f"https://{address}:{APISERVER_PORT}"))
        try:
            yield client
        finally:
            client.close()

    def machine_exists(self, node: str) -> bool:
        return True  # a rack machine that does not answer SSH is reported by the shell (exit 3)

    def provision(self, log: Log) -> list[str]:
        return []

    def restart_k3s(self, node: str, shell: Shell, log: Log) -> list[str]:
        if not shell.run("command -v k3s >/dev/null").ok:
            raise EnvironmentProblem(f"{node}: k3s is not installed; install k3s {self.model.k3s_version} there "
                                     "without starting it (INSTALL_K3S_SKIP_START=true), then run rack.apply again")
        must(shell, "systemctl restart k3s", "systemctl restart k3s", timeout=300)
        return [f"{node}: systemctl restart k3s"]

    def retire(self, node: str, remaining: list[str], log: Log) -> list[str]:
        # k3s removes a server's etcd member when its Node is deleted; the machine is the owner's to wipe
        from ..cluster.apply import delete_documents

        with self.kube() as api:
            results = delete_documents(api, [("v1", "Node", None, node)], wait_timeout=60)
        log(f"  {node}: Node deleted; run k3s-killall.sh and k3s-uninstall.sh on the machine yourself")
        return [f"deleted {r.ref}" for r in results if r.action == "deleted"]

    def live_cilium_values(self) -> dict | None:
        if shutil.which("helm") is None:
            return None
        r = self._rack
        res = subprocess.run(helm_command(r, "get", "values", r.helm_release, "-n", r.helm_namespace, "-o", "json"),
                             capture_output=True, text=True, timeout=60, check=False)
        if res.returncode != 0:
            if "not found" in res.stderr:
                return {}
            raise EnvironmentProblem(f"helm get values {r.helm_release} failed: {res.stderr.strip()[-300:]}")
        return dict(json.loads(res.stdout or "{}") or {})

    def cilium_values_skip(self) -> str | None:
        return None

    def apply_cilium_values(self, values_file: Path, version: str, log: Log) -> list[str]:
        r = self._rack
        cmd = helm_command(r, "upgrade", "--install", r.helm_release, r.helm_chart, "--version", version,
                           "-n", r.helm_namespace, "-f", str(values_file), "--wait", "--timeout", "10m")
        if shutil.which("helm") is None:
            raise EnvironmentProblem("helm is not on the PATH; install it, or run yourself: " + " ".join(cmd))
        log("  " + " ".join(cmd))
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        if res.returncode != 0:
            raise EnvironmentProblem(f"helm upgrade {r.helm_release} failed", res.stderr.strip().splitlines()[-10:])
        return [f"helm upgrade --install {r.helm_release} {version}"]

    def settle(self, log: Log) -> list[str]:
        return []
