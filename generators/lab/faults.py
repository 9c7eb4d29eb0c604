"""The drill's fault primitives on a running lab: implements ``generators.drill.lab_api.Lab``.

Link faults and the gateway restart are the same in every fidelity; the speaker and apiserver faults
belong to the cluster nodes' kind (it knows what its nodes run).
"""
from __future__ import annotations

import time

from ..errors import LabError
from .access import LabAccess
from .expect import verify_lab
from .kinds import ClusterKind, cluster_kind
from .kinds.gateway import NAME as GATEWAY

LAB_IF = "eth1"  # every node's interface on the switch segment


def _link_rules() -> list[list[str]]:
    return [["INPUT", "-i", LAB_IF, "-j", "DROP"], ["OUTPUT", "-o", LAB_IF, "-j", "DROP"]]


class LabFaults(LabAccess):
    """A lab the drill can break: access plus faults and verify."""

    last_verify_failures: tuple[str, ...] = ()

    @property
    def kind(self) -> ClusterKind:
        return cluster_kind(self.lab.fidelity)

    def link_down(self, node: str) -> None:
        """Silent power loss: drop every packet in and out of the node's lab interface, inside the node.

        No FIN, no RST, no NOTIFICATION reaches the gateway or the client. (tc would be closer to a dead
        NIC, but this kernel has no tc classifiers, docs/FACTS.md#machine; iptables in the node's namespace
        does the same for IP.)
        """
        for rule in _link_rules():
            if self.exec(node, ["iptables", "-C", *rule]).exit_code != 0:
                res = self.exec(node, ["iptables", "-I", *rule])
                if res.exit_code != 0:
                    raise LabError(f"{node}: iptables -I {' '.join(rule)} failed: {res.stderr.strip()}")

    def link_up(self, node: str) -> None:
        """Undo link_down (idempotent)."""
        for rule in _link_rules():
            while self.exec(node, ["iptables", "-C", *rule]).exit_code == 0:
                self.exec(node, ["iptables", "-D", *rule])

    @property
    def graceful_stop_sends_cease(self) -> bool:
        return self.kind.graceful_stop_sends_cease

    def signal_speaker(self, node: str, sig: int) -> None:
        self.kind.signal_speaker(self, node, sig)

    def start_speaker(self, node: str) -> None:
        self.kind.start_speaker(self, node)

    def stop_speaker_graceful(self, node: str) -> None:
        self.kind.stop_speaker_graceful(self, node)

    def stop_apiserver(self, node: str) -> None:
        self.kind.stop_apiserver(self, node)

    def start_apiserver(self, node: str) -> None:
        self.kind.start_apiserver(self, node)

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

    def verify(self) -> bool:
        """The `invoke verify` checks; the failing ones stay in ``last_verify_failures``."""
        results = verify_lab(self)
        self.last_verify_failures = tuple(f"{r.name}: {r.summary}" for r in results if not r.ok)
        return not self.last_verify_failures
