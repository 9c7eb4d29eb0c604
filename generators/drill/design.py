"""The timers the design promises, read from a rendered directory (``generators.rendered``).

- BGP: the ``CiliumBGPPeerConfig`` the cluster config's peer points at (``timers``,
  ``gracefulRestart``); absent fields take the CRD defaults (hold 90, keepalive 30,
  connect-retry 120, graceful restart off / 120 s).
- apiserver VIP: the ``CiliumClusterwideEnvoyConfig`` cluster's first health check (interval,
  timeout, unhealthy/healthy thresholds, interval jitter), its ``connect_timeout``, and the
  listener's ``tcp_proxy`` ``idle_timeout``. Durations are protojson strings (``"0.1s"``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from generators.rendered import Doc, Rendered, load_rendered

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"

CRD_HOLD, CRD_KEEPALIVE, CRD_CONNECT_RETRY, CRD_RESTART = 90, 30, 120, 120


class DesignError(ValueError):
    """The rendered directory lacks what the drill needs, or has it in a form nobody would accept."""


@dataclass(frozen=True)
class BgpTimers:
    hold: float
    keepalive: float
    connect_retry: float
    gr_enabled: bool
    restart_time: float
    source: str  # where they came from, e.g. "cilium/bgp.yaml: CiliumBGPPeerConfig/ucg-fiber-peer"


@dataclass(frozen=True)
class HealthCheck:
    interval: float
    timeout: float
    unhealthy_threshold: int
    healthy_threshold: int
    interval_jitter: float
    connect_timeout: float
    idle_timeout: float | None
    source: str


@dataclass(frozen=True)
class Design:
    bgp: BgpTimers
    health: HealthCheck | None


def parse_duration(value: object, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = DURATION.match(str(value))
    if not m:
        raise DesignError(f"{where}: duration {value!r} is not protojson (write seconds with an 's', e.g. '0.1s')")
    return float(m.group(1))


def _peer_config(rendered: Rendered) -> Doc:
    configs = rendered.of_kind("CiliumBGPPeerConfig")
    if not configs:
        raise DesignError(f"{rendered.root}: no CiliumBGPPeerConfig in cilium/bgp.yaml; run `invoke gen` again")
    for cc in rendered.of_kind("CiliumBGPClusterConfig"):
        for inst in cc.spec.get("bgpInstances") or []:
            for peer in inst.get("peers") or []:
                ref = ((peer.get("peerConfigRef") or {}).get("name"))
                match = next((d for d in configs if d.name == ref), None)
                if match is not None:
                    return match
    return configs[0]


def bgp_timers(rendered: Rendered) -> BgpTimers:
    doc = _peer_config(rendered)
    timers = doc.spec.get("timers") or {}
    gr = doc.spec.get("gracefulRestart") or {}
    return BgpTimers(
        hold=float(timers.get("holdTimeSeconds", CRD_HOLD)),
        keepalive=float(timers.get("keepAliveTimeSeconds", CRD_KEEPALIVE)),
        connect_retry=float(timers.get("connectRetryTimeSeconds", CRD_CONNECT_RETRY)),
        gr_enabled=bool(gr.get("enabled", False)),
        restart_time=float(gr.get("restartTimeSeconds", CRD_RESTART)),
        source=f"{doc.file}: {doc.ref}",
    )


def _resources(doc: Doc, type_url: str) -> list[dict]:
    return [r for r in doc.spec.get("resources") or [] if isinstance(r, dict) and r.get("@type") == type_url]


def _idle_timeout(doc: Doc) -> float | None:
    for listener in _resources(doc, LISTENER_TYPE):
        for chain in listener.get("filter_chains") or []:
            for flt in chain.get("filters") or []:
                cfg = flt.get("typed_config") or {}
                if "idle_timeout" in cfg:
                    return parse_duration(cfg["idle_timeout"], f"{doc.file}: {doc.ref} listener idle_timeout")
    return None


def health_check(rendered: Rendered) -> HealthCheck | None:
    for doc in rendered.of_kind("CiliumClusterwideEnvoyConfig"):
        for cluster in _resources(doc, CLUSTER_TYPE):
            checks = cluster.get("health_checks") or []
            if not checks:
                continue
            hc = checks[0]
            where = f"{doc.file}: {doc.ref} cluster {cluster.get('name')}"
            try:
                return HealthCheck(
                    interval=parse_duration(hc["interval"], where + " interval"),
                    timeout=parse_duration(hc["timeout"], where + " timeout"),
                    unhealthy_threshold=int(hc["unhealthy_threshold"]),
                    healthy_threshold=int(hc["healthy_threshold"]),
                    interval_jitter=parse_duration(hc.get("interval_jitter", "0s"), where + " interval_jitter"),
                    connect_timeout=parse_duration(cluster.get("connect_timeout", "5s"), where + " connect_timeout"),
                    idle_timeout=_idle_timeout(doc),
                    source=where,
                )
            except KeyError as exc:
                raise DesignError(f"{where}: health check lacks {exc.args[0]} (Envoy requires it)") from exc
    return None


def load_design(rendered_dir: str | Path) -> Design:
    rendered = load_rendered(rendered_dir)
    return Design(bgp=bgp_timers(rendered), health=health_check(rendered))
