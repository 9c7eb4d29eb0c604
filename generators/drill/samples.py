"""Typed views of the JSON lines written by the probe and the sampler agents (pure parsing)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from generators.readback.frrstate import BgpPath  # one type for a BGP path, whoever read it


class SampleError(ValueError):
    """A sample file that cannot be read."""


@dataclass(frozen=True)
class Attempt:
    vip: str  # role: "apiserver" | "traefik"
    k: int
    t_sched: float
    t_start: float
    outcome: str  # "ok" or an error kind ("refused", "connect-timeout", ...)
    latency: float
    node: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


@dataclass(frozen=True)
class VipState:
    ip: str
    bgp: tuple[BgpPath, ...]
    rib: tuple[str, ...]  # zebra next-hops that are active and in the FIB
    fib: tuple[str, ...]  # kernel next-hops
    frr: bool = True  # False: vtysh did not answer, ``bgp``/``rib`` are unknown (not empty)

    @property
    def bgp_nexthops(self) -> frozenset[str]:
        """Next-hops of the usable BGP paths (stale ones included: FRR still forwards on them)."""
        return frozenset(p.nexthop or p.peer or "" for p in self.bgp if p.valid) - {""}

    @property
    def stale_nexthops(self) -> frozenset[str]:
        return frozenset(p.nexthop or p.peer or "" for p in self.bgp if p.stale) - {""}

    @property
    def fib_nexthops(self) -> frozenset[str]:
        return frozenset(self.fib)


@dataclass(frozen=True)
class ControlSample:
    t: float
    peers: dict[str, str]  # peer ip -> state
    vips: dict[str, VipState]
    errors: tuple[str, ...] = ()

    @property
    def frr_ok(self) -> bool:
        return all(v.frr for v in self.vips.values())


@dataclass
class ProbeRun:
    rate: float
    timeout: float
    t0: float
    attempts: list[Attempt] = field(default_factory=list)
    ended: bool = False

    @property
    def interval(self) -> float:
        return 1.0 / self.rate

    def of(self, vip: str) -> list[Attempt]:
        return [a for a in self.attempts if a.vip == vip]


@dataclass
class ControlRun:
    interval: float
    t0: float
    samples: list[ControlSample] = field(default_factory=list)
    ended: bool = False
    unusable: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)  # samples without VIP data


def _lines(text: str, what: str) -> list[dict]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if n == len(text.splitlines()):
                continue  # the last line may be cut if the agent was killed mid-write
            raise SampleError(f"{what} line {n}: not JSON ({exc})") from exc
    return out


def parse_probe(text: str) -> ProbeRun:
    records = _lines(text, "probe samples")
    meta = next((r for r in records if r.get("type") == "meta"), None)
    if meta is None:
        raise SampleError("probe samples: no meta line; was the probe started?")
    run = ProbeRun(rate=float(meta["rate"]), timeout=float(meta["timeout"]), t0=float(meta["t0"]))
    for r in records:
        if r.get("type") == "attempt":
            run.attempts.append(Attempt(
                vip=r["vip"], k=int(r["k"]), t_sched=float(r["t_sched"]), t_start=float(r["t_start"]),
                outcome=str(r["outcome"]), latency=float(r.get("latency", 0.0)), node=r.get("node"),
                detail=str(r.get("detail", "")),
            ))
        elif r.get("type") == "end":
            run.ended = True
    run.attempts.sort(key=lambda a: (a.t_start, a.vip))
    return run


def vip_state_from_json(d: dict) -> VipState:
    return VipState(
        ip=d["ip"],
        bgp=tuple(BgpPath(peer=p.get("peer"), nexthop=p.get("nexthop"), stale=bool(p.get("stale")),
                          valid=bool(p.get("valid")), best=bool(p.get("best")),
                          multipath=bool(p.get("multipath"))) for p in d.get("bgp") or []),
        rib=tuple(sorted(n["ip"] for n in d.get("rib") or [] if n.get("active") and n.get("fib"))),
        fib=tuple(sorted(d.get("fib") or [])),
        frr=d.get("bgp") is not None,
    )


def control_sample_from_json(r: dict) -> ControlSample:
    return ControlSample(
        t=float(r["t"]),
        peers={ip: str(p.get("state")) for ip, p in (r.get("peers") or {}).items()},
        vips={role: vip_state_from_json(v) for role, v in (r.get("vips") or {}).items()},
        errors=tuple(r.get("errors") or ()),
    )


def parse_control(text: str) -> ControlRun:
    records = _lines(text, "control-plane samples")
    meta = next((r for r in records if r.get("type") == "meta"), None)
    if meta is None:
        raise SampleError("control-plane samples: no meta line; was the sampler started?")
    run = ControlRun(interval=float(meta["interval"]), t0=float(meta["t0"]))
    for r in records:
        if r.get("type") == "sample":
            sample = control_sample_from_json(r)
            if sample.vips:
                run.samples.append(sample)
            else:  # vtysh gave nothing: not evidence that routes were withdrawn
                run.unusable.append((sample.t, sample.errors))
        elif r.get("type") == "end":
            run.ended = True
    run.samples.sort(key=lambda s: s.t)
    return run
