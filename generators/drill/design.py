"""The timers the design promises, read from a rendered directory through ``generators.readback``.

- BGP: the ``CiliumBGPPeerConfig`` the cluster config's peer points at (``timers``, ``gracefulRestart``);
  absent fields take the CRD defaults (``generators.readback.cilium``).
- apiserver VIP: the ``CiliumClusterwideEnvoyConfig`` cluster's first health check (interval, timeout,
  unhealthy/healthy thresholds, interval jitter), its ``connect_timeout``, and the listener's
  ``tcp_proxy`` ``idle_timeout``. Durations are protojson strings (``"0.1s"``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from generators.errors import InputError
from generators.readback.cilium import Bgp, envoy_configs
from generators.readback.rendered import Rendered, load_rendered


class DesignError(InputError, ValueError):
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
class ProxyTimers:
    """The apiserver VIP's proxy timers in seconds: the CCEC cluster's health check and timeouts."""

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
    health: ProxyTimers | None


def bgp_timers(rendered: Rendered) -> BgpTimers:
    config = Bgp.read(rendered).gateway_peer_config()
    if config is None or config.doc is None:
        raise DesignError(f"{rendered.root}: no CiliumBGPPeerConfig in cilium/bgp.yaml; run `invoke gen` again")
    numbers = {"holdTimeSeconds": config.hold, "keepAliveTimeSeconds": config.keepalive,
               "connectRetryTimeSeconds": config.connect_retry, "restartTimeSeconds": config.restart_time}
    bad = [k for k, v in numbers.items() if v is None]
    if bad:
        raise DesignError(f"{config.doc.file}: {config.doc.ref}: {', '.join(bad)} is not a whole number of seconds")
    assert config.hold is not None and config.keepalive is not None
    assert config.connect_retry is not None and config.restart_time is not None
    return BgpTimers(hold=float(config.hold), keepalive=float(config.keepalive),
                     connect_retry=float(config.connect_retry), gr_enabled=config.gr_enabled,
                     restart_time=float(config.restart_time), source=f"{config.doc.file}: {config.doc.ref}")


def proxy_timers(rendered: Rendered) -> ProxyTimers | None:
    for config in envoy_configs(rendered):
        if config.doc.kind != "CiliumClusterwideEnvoyConfig":
            continue
        if config.dropped:
            name, why = next(iter(config.dropped.items()))
            raise DesignError(f"{config.doc.file}: {config.doc.ref}: Cilium drops resource {name!r} ({why}); "
                              "fix it first (`invoke preflight` names the field)")
        found = config.first_health_check()
        if found is None:
            continue
        cluster, hc = found
        idle = config.idle_timeout()
        return ProxyTimers(
            interval=float(hc.interval), timeout=float(hc.timeout), unhealthy_threshold=hc.unhealthy_threshold,
            healthy_threshold=hc.healthy_threshold,
            interval_jitter=float(hc.interval_jitter) if hc.interval_jitter is not None else 0.0,
            connect_timeout=float(cluster.connect_timeout), idle_timeout=None if idle is None else float(idle),
            source=f"{config.doc.file}: {config.doc.ref} cluster {cluster.name}")
    return None


def load_design(rendered_dir: str | Path) -> Design:
    rendered = load_rendered(rendered_dir)
    return Design(bgp=bgp_timers(rendered), health=proxy_timers(rendered))
