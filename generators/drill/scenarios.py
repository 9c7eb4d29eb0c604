"""The drill's scenarios as data, and the ledger that makes every injected fault undoable.

A fault is injected only through :class:`FaultLedger`, which records the undo step *before* it
calls the lab, so an interrupted drill (exception, SIGINT, SIGTERM) can always put the lab back.
"""
from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from typing import Callable

from generators.drill.lab_api import Lab


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    per_node: bool  # needs a target cluster node
    inject: Callable[[Lab, str | None], None]
    undo: Callable[[Lab, str | None], None] | None  # None: the fault ends by itself (one-shot)
    wait_for: str  # the condition the runner holds the fault for: "fib-gone" | "apiserver-out" | "none"


def _node(node: str | None) -> str:
    if node is None:
        raise ValueError("this scenario needs --node")
    return node


def _power_off(lab: Lab, node: str | None) -> None:
    lab.link_down(_node(node))


def _power_on(lab: Lab, node: str | None) -> None:
    lab.link_up(_node(node))


def _kill_speaker(lab: Lab, node: str | None) -> None:
    lab.signal_speaker(_node(node), int(signal.SIGKILL))


def _start_speaker(lab: Lab, node: str | None) -> None:
    lab.start_speaker(_node(node))


def _stop_speaker(lab: Lab, node: str | None) -> None:
    lab.stop_speaker_graceful(_node(node))


def _stop_apiserver(lab: Lab, node: str | None) -> None:
    lab.stop_apiserver(_node(node))


def _start_apiserver(lab: Lab, node: str | None) -> None:
    lab.start_apiserver(_node(node))


def _restart_frr(lab: Lab, node: str | None) -> None:
    lab.restart_gateway_frr()


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("node-power-loss", "the node's lab link drops everything (no FIN, no NOTIFICATION), then returns",
             True, _power_off, _power_on, "fib-gone"),
    Scenario("speaker-crash", "the node's BGP speaker gets SIGKILL, then is started again; data plane stays up",
             True, _kill_speaker, _start_speaker, "fib-gone"),
    Scenario("speaker-graceful-stop", "the node's BGP speaker stops cleanly (drain / rolling restart), then starts",
             True, _stop_speaker, _start_speaker, "fib-gone"),
    Scenario("apiserver-down", "only the node's apiserver stops (BGP stays up), then starts again",
             True, _stop_apiserver, _start_apiserver, "apiserver-out"),
    Scenario("gateway-restart", "FRR on the gateway restarts", False, _restart_frr, None, "none"),
)}
ALL = tuple(SCENARIOS)


def resolve(names: str) -> list[Scenario]:
    """``all`` or one scenario name (comma-separated lists work too)."""
    wanted = list(ALL) if names == "all" else [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(ALL)} or all")
    return [SCENARIOS[n] for n in wanted]


@dataclass
class LedgerEntry:
    scenario: str
    node: str | None
    undo: Callable[[], None]
    injected_at: float
    undone_at: float | None = None
    error: str | None = None


@dataclass
class FaultLedger:
    """Injected faults and how to undo them; ``undo_all`` is idempotent and safe to call from ``finally``."""

    lab: Lab
    clock: Callable[[], float] = time.time
    entries: list[LedgerEntry] = field(default_factory=list)

    def inject(self, scenario: Scenario, node: str | None) -> tuple[float, float]:
        start = self.clock()
        if scenario.undo is not None:
            undo = scenario.undo
            # recorded before the call: a fault half-injected when we are interrupted is still undone
            self.entries.append(LedgerEntry(scenario.name, node, lambda: undo(self.lab, node), start))
        scenario.inject(self.lab, node)
        return start, self.clock()

    @property
    def pending(self) -> list[LedgerEntry]:
        return [e for e in self.entries if e.undone_at is None]

    def undo_last(self) -> tuple[float, float] | None:
        if not self.pending:
            return None
        entry = self.pending[-1]
        start = self.clock()
        entry.undo()
        entry.undone_at = self.clock()
        return start, entry.undone_at

    def undo_all(self) -> list[str]:
        """Undo every pending fault (newest first); returns the errors, never raises."""
        errors = []
        for entry in reversed(self.pending):
            try:
                entry.undo()
                entry.undone_at = self.clock()
            except Exception as exc:  # noqa: BLE001 - keep undoing the others, report every failure
                entry.error = f"undo of {entry.scenario} on {entry.node or 'gateway'} failed: {exc}"
                errors.append(entry.error)
        return errors
