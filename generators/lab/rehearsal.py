"""The lab as a rollout :class:`~generators.rack.site.Site`: ``rack.plan`` / ``rack.apply`` rehearsed on it.

Everything the rack gets goes the same way here: OpenSSH (through the lab's client container: lab addresses
exist only inside the lab) to sshd on the gateway and on every node, with the lab's own key and a
known_hosts that names each machine's host key; the cluster's real API through the apiserver VIP. What
differs is what the lab stands in for, and it says so:

- a new node's machine is a new container (``containerlab deploy`` reconciles the lab's topology);
- "restart k3s" restarts that node's etcd member and kube-apiserver from the config.yaml the rollout
  wrote (and its Cilium agent when its configuration changed): ``CiliumKind.restart_k3s``;
- Cilium's Helm values are not applied (no kubelet, no Helm here; the agents run with the rendered values
  from lab-up);
- after a step, the stand-ins for Cilium's data path and the Traefik DaemonSet follow what Cilium decided.

Only the Cilium fidelity has a Kubernetes API to roll out to.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import InputError
from ..model import Model, Rack, RackCluster, SshTarget
from ..rack.shell import Shell, SshShell
from .access import LabNotRunning
from .faults import LabFaults
from .kinds import CiliumKind, cluster_kind
from .kinds.client import NAME as CLIENT
from .kinds.client import RELAY_DIR
from .kinds.gateway import NAME as GATEWAY
from .kinds.sshd import client_key, install, known_hosts, proxy_command
from .lifecycle import reconcile_machines

Log = Callable[[str], None]
APISERVER_PORT = 6443


class LabSite:
    """A running Cilium-fidelity lab, reached the way the rack is."""

    is_lab = True

    def __init__(self, lab: LabFaults):
        fidelity = lab.lab.fidelity
        kind = cluster_kind(fidelity)
        if not isinstance(kind, CiliumKind):
            raise InputError(f"lab {lab.name} runs the {fidelity} fidelity, which has no Kubernetes API to roll "
                             "out to; rehearse on a lab with `lab.fidelity: cilium`")
        if lab.running_containers().get(lab.gateway) != "running":
            raise LabNotRunning(f"lab {lab.name} is not running; start it with `invoke lab-up --inventory "
                                f"{lab.model.source}` and rehearse the rollout on it")
        self.lab = lab
        self.kind = kind
        self.model: Model = lab.model
        self.label = f"lab {lab.name}"

    def _target(self, name: str, host: str, base: SshTarget) -> SshTarget:
        return SshTarget(name=name, host=host, port=22, user="root", key_file=str(client_key(self.lab.paths)),
                         known_hosts=str(known_hosts(self.lab.paths)), host_key_policy="strict",
                         connect_timeout=base.connect_timeout)

    def targets(self) -> Rack:
        rack = self.model.rack
        assert rack is not None
        return Rack(
            gateway=self._target("gateway", str(self.model.gateway.address), rack.gateway),
            nodes=tuple(self._target(n.name, str(n.address), rack.node(n.name)) for n in self.model.nodes),
            cluster=RackCluster(kubeconfig=None, context=None,
                                server=f"https://{self.model.apiserver.address}:{self.model.apiserver.port}",
                                field_manager=rack.cluster.field_manager),
            helm_release=rack.helm_release, helm_namespace=rack.helm_namespace, helm_chart=rack.helm_chart,
        )

    @contextmanager
    def shell(self, target: SshTarget) -> Iterator[Shell]:
        proxy = proxy_command(self.lab.container(CLIENT), f"{RELAY_DIR}/relay.py", target.connect_timeout)
        with SshShell(target, proxy_command=proxy) as sh:
            yield sh

    @contextmanager
    def kube(self) -> Iterator[Any]:
        with self.lab.kube(f"https://{self.model.apiserver.address}:{self.model.apiserver.port}") as api:
            yield api

    @contextmanager
    def node_kube(self, node: str) -> Iterator[Any]:
        with self.lab.kube(f"https://{self.lab.nodes[node]}:{APISERVER_PORT}") as api:
            yield api

    def machine_exists(self, node: str) -> bool:
        return self.lab.running_containers().get(node) == "running"

    def provision(self, log: Log) -> list[str]:
        missing = [n.name for n in self.model.nodes if not self.machine_exists(n.name)]
        if not missing:
            return []
        changed = reconcile_machines(self.lab, log)
        for node in missing:  # a bare machine: reachable over SSH, nothing of k3s yet
            changed += install(self.lab, node, self.lab.nodes[node])
        return changed

    def restart_k3s(self, node: str, shell: Shell, log: Log) -> list[str]:
        log(f"  {node}: restarting what k3s runs (lab: etcd member, kube-apiserver, Cilium's agent)")
        return self.kind.restart_k3s(self.lab, node)

    def retire(self, node: str, remaining: list[str], log: Log) -> list[str]:
        changed = self.kind.retire(self.lab, node, remaining)
        return changed + reconcile_machines(self.lab, log)  # its container goes, as the mini PC would

    def live_cilium_values(self) -> dict | None:
        return None  # the lab runs no Helm: the agents run with the rendered values (see cilium_values_skip)

    def cilium_values_skip(self) -> str | None:
        return ("the lab runs no kubelet and no Helm: Cilium's agents (cilium-bgp-host) run with the rendered "
                "values from lab-up; on the rack this step runs helm upgrade --install")

    def apply_cilium_values(self, values_file: Path, version: str, log: Log) -> list[str]:
        raise InputError(self.cilium_values_skip() or "")

    def settle(self, log: Log) -> list[str]:
        return self.kind.follow(self.lab)


__all__ = ["GATEWAY", "LabSite"]
