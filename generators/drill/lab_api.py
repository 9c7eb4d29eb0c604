"""What the drill needs from a running lab (implemented by ``generators.lab.faults.LabFaults``).

The drill codes against this Protocol only; it never talks to Docker itself. Every probe of a lab
address runs inside a lab container through ``exec``/``exec_background``. It extends the Protocol
``verify`` uses (``generators.checks.verify.LabTarget``): one lab interface, not two.

Fault primitives, and which behaviour the drill relies on:

- ``link_down(node)`` / ``link_up(node)``: a silent power loss. Every packet in and out of the node's
  lab interface is dropped *inside the node* with iptables (this kernel has no tc classifiers; see
  docs/FACTS.md#machine), with no RST, no ICMP, no FIN, no BGP NOTIFICATION. Not ``docker pause``: a paused
  container's kernel still ACKs TCP and completes handshakes into listen backlogs, so the gateway and the
  probe would see a half-alive node, not a dead one. Not ``ip link set down`` either: the node's routes
  (default via the gateway) would not come back with the link.
- ``signal_speaker(node, sig)``: send ``sig`` (e.g. ``signal.SIGKILL``) to the node's BGP speaker.
- ``start_speaker(node)`` / ``stop_speaker_graceful(node)``: start it / stop it the way a drained node or
  a rolling agent restart does (what goes on the wire then is the fidelity's: see ``speaker_stop``).
- ``stop_apiserver(node)`` / ``start_apiserver(node)``: only the node's apiserver (BGP stays up).
- ``restart_gateway_frr()``: restart FRR on ``ucg`` and return once its daemons run again.
- ``verify()``: the ``invoke verify`` checks; True when all pass.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from generators.checks.verify import LabTarget


@runtime_checkable
class ExecResult(Protocol):
    @property
    def exit_code(self) -> int: ...

    @property
    def stdout(self) -> str: ...

    @property
    def stderr(self) -> str: ...


@runtime_checkable
class Lab(LabTarget, Protocol):
    """A running lab. Node names: ``"ucg"`` (FRR gateway), ``"client"``, and the cluster nodes."""

    @property
    def name(self) -> str: ...

    @property
    def nodes(self) -> dict[str, str]:  # cluster node name -> lab IP
        ...

    @property
    def vips(self) -> dict[str, str]:  # role ("apiserver", "traefik") -> VIP
        ...

    @property
    def apiserver_port(self) -> int: ...

    @property
    def dns_name(self) -> str: ...

    @property
    def rendered_dir(self) -> Path: ...

    @property
    def fidelity(self) -> str: ...

    @property
    def graceful_stop_sends_cease(self) -> bool:
        """Whether ``stop_speaker_graceful`` ends the sessions with a Cease (GoBGP) or only closes them (Cilium)."""

    def exec_background(self, node: str, argv: list[str]) -> None: ...

    def put_file(self, node: str, path: str, data: bytes, mode: int = 0o755) -> None: ...

    def link_down(self, node: str) -> None: ...

    def link_up(self, node: str) -> None: ...

    def signal_speaker(self, node: str, sig: int) -> None: ...

    def start_speaker(self, node: str) -> None: ...

    def stop_speaker_graceful(self, node: str) -> None: ...

    def stop_apiserver(self, node: str) -> None: ...

    def start_apiserver(self, node: str) -> None: ...

    def restart_gateway_frr(self) -> None: ...

    def verify(self) -> bool: ...
