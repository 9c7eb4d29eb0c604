"""GoBGP v3.37.0 configuration (``gobgpd -f``, TOML) for one Cilium BGP instance on one node.

Field names follow GoBGP's ``pkg/config/oc`` (read with viper ``UnmarshalExact``: unknown keys are fatal).
What Cilium sets through GoBGP's API is expressed in the file, except ``local-restarting``, which is GoBGP
state, not configuration: ``gobgpd -r`` sets it for every neighbor with graceful restart enabled, exactly
where Cilium sets it. Policies mirror Cilium's: a global import policy that rejects every received path
(local paths allowed) and, per peer, an export policy accepting only the VIPs advertised to that peer
(default export: reject).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from generators.errors import InputError

from .bgp import IDLE_HOLD_AFTER_RESET, Advertisement, InstancePlan, PeerPlan

API_BASE_PORT = 50051
ALLOW_LOCAL_POLICY = "allow-local"

# CiliumBGPFamily (afi, safi) -> GoBGP afi-safi-name
AFI_SAFI_NAMES = {
    ("ipv4", "unicast"): "ipv4-unicast",
    ("ipv6", "unicast"): "ipv6-unicast",
    ("ipv4", "multicast"): "ipv4-multicast",
    ("ipv6", "multicast"): "ipv6-multicast",
    ("ipv4", "mpls_label"): "ipv4-labelled-unicast",
    ("ipv6", "mpls_label"): "ipv6-labelled-unicast",
    ("ipv4", "mpls_vpn"): "l3vpn-ipv4-unicast",
    ("ipv6", "mpls_vpn"): "l3vpn-ipv6-unicast",
    ("l2vpn", "evpn"): "l2vpn-evpn",
    ("l2vpn", "vpls"): "l2vpn-vpls",
    ("ipv4", "flowspec_unicast"): "ipv4-flowspec",
    ("ipv6", "flowspec_unicast"): "ipv6-flowspec",
}


class GoBgpConfigError(InputError, ValueError):
    """Something in the rendered BGP resources GoBGP cannot be configured with."""


def _q(value: str) -> str:
    return json.dumps(value)  # a TOML basic string for the ASCII values used here


def _list(values: list[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


@dataclass(frozen=True)
class GoBgpInstance:
    instance: str
    config_path: str  # inside the container
    api_port: int
    toml: str
    routes: tuple[str, ...]  # prefixes to inject

    def route_argv(self) -> list[list[str]]:
        out = []
        for prefix in self.routes:
            family = "ipv6" if ":" in prefix else "ipv4"
            out.append(
                ["gobgp", "-p", str(self.api_port), "global", "rib", "add", "-a", family, prefix, "origin", "igp"]
            )
        return out

    def daemon_argv(self) -> list[str]:
        # -r: local-restarting (Cilium sets it when GR is on); API on loopback only.
        return [
            "gobgpd",
            "-f",
            self.config_path,
            "-r",
            "-p",
            "--api-hosts",
            f"127.0.0.1:{self.api_port}",
            "--pprof-disable",
        ]


def _global(inst: InstancePlan, export_policies: list[str]) -> list[str]:
    lines = [
        "[global.config]",
        f"  as = {inst.local_asn}",
        f"  router-id = {_q(inst.router_id)}",
        f"  port = {inst.listen_port}",
    ]
    lines += [
        "",
        "[global.apply-policy.config]",
        f"  import-policy-list = {_list([ALLOW_LOCAL_POLICY])}",
        '  default-import-policy = "reject-route"',
        f"  export-policy-list = {_list(export_policies)}",
        '  default-export-policy = "reject-route"',
    ]
    return lines


def _afi_safi_name(afi: str, safi: str, peer: str) -> str:
    try:
        return AFI_SAFI_NAMES[(afi, safi)]
    except KeyError as exc:
        raise GoBgpConfigError(
            f"peer {peer}: family {afi}/{safi} is not supported by the twin; "
            f"use one of {sorted(f'{a}/{s}' for a, s in AFI_SAFI_NAMES)}"
        ) from exc


def _neighbor(peer: PeerPlan, local_asn: int) -> list[str]:
    lines = [
        "",
        "[[neighbors]]",
        "  [neighbors.config]",
        f"    neighbor-address = {_q(str(peer.address))}",
        f"    peer-as = {peer.asn}",
        "  [neighbors.timers.config]",
        f"    connect-retry = {peer.connect_retry}",
        f"    hold-time = {peer.hold_time}",
        f"    keepalive-interval = {peer.keepalive}",
        f"    idle-hold-time-after-reset = {IDLE_HOLD_AFTER_RESET}",
        "  [neighbors.transport.config]",
        f"    local-address = {_q('::' if ':' in str(peer.address) else '0.0.0.0')}",
        f"    remote-port = {peer.peer_port}",
    ]
    if peer.multihop_enabled(local_asn):
        lines += [
            "  [neighbors.ebgp-multihop.config]",
            "    enabled = true",
            f"    multihop-ttl = {peer.ebgp_multihop_ttl}",
        ]
    if peer.gr_enabled:
        lines += [
            "  [neighbors.graceful-restart.config]",
            "    enabled = true",
            f"    restart-time = {peer.gr_restart_time}",
            "    notification-enabled = true",
        ]
    for family in peer.families:
        lines += [
            "  [[neighbors.afi-safis]]",
            "    [neighbors.afi-safis.config]",
            f"      afi-safi-name = {_q(_afi_safi_name(family.afi, family.safi, peer.name))}",
            "    [neighbors.afi-safis.mp-graceful-restart.config]",
            f"      enabled = {'true' if peer.gr_enabled else 'false'}",
        ]
    return lines


def _policies(inst: InstancePlan, adverts: list[Advertisement]) -> tuple[list[str], list[str]]:
    """Defined sets + policy definitions, and the export policy names."""
    sets: list[str] = []
    policies = [
        "",
        "[[policy-definitions]]",
        f"  name = {_q(ALLOW_LOCAL_POLICY)}",
        "  [[policy-definitions.statements]]",
        f"    name = {_q(ALLOW_LOCAL_POLICY + '-stmt')}",
        "    [policy-definitions.statements.conditions.bgp-conditions]",
        '      route-type = "local"',
        "    [policy-definitions.statements.actions]",
        '      route-disposition = "accept-route"',
    ]
    names: list[str] = []
    for peer in inst.configured_peers():
        prefixes = sorted({a.prefix for a in adverts if a.peer == peer.name and a.instance == inst.name})
        if not prefixes:
            continue
        base = f"{inst.name}-{peer.name}"
        plen = 128 if ":" in str(peer.address) else 32
        sets += [
            "",
            "[[defined-sets.neighbor-sets]]",
            f"  neighbor-set-name = {_q(base + '-neighbor')}",
            f"  neighbor-info-list = {_list([f'{peer.address}/{plen}'])}",
            "",
            "[[defined-sets.prefix-sets]]",
            f"  prefix-set-name = {_q(base + '-vips')}",
        ]
        for prefix in prefixes:
            length = prefix.rsplit("/", 1)[1]
            sets += [
                "  [[defined-sets.prefix-sets.prefix-list]]",
                f"    ip-prefix = {_q(prefix)}",
                f"    masklength-range = {_q(f'{length}..{length}')}",
            ]
        name = f"{base}-export"
        names.append(name)
        policies += [
            "",
            "[[policy-definitions]]",
            f"  name = {_q(name)}",
            "  [[policy-definitions.statements]]",
            f"    name = {_q(name + '-stmt')}",
            "    [policy-definitions.statements.conditions.match-neighbor-set]",
            f"      neighbor-set = {_q(base + '-neighbor')}",
            '      match-set-options = "any"',
            "    [policy-definitions.statements.conditions.match-prefix-set]",
            f"      prefix-set = {_q(base + '-vips')}",
            '      match-set-options = "any"',
            "    [policy-definitions.statements.actions]",
            '      route-disposition = "accept-route"',
        ]
    return sets + policies, names


def render_instance(node: str, index: int, inst: InstancePlan, adverts: list[Advertisement]) -> GoBgpInstance:
    mine = [a for a in adverts if a.node == node and a.instance == inst.name]
    policy_lines, export_names = _policies(inst, mine)
    lines = [
        f"# GoBGP {node} / Cilium BGP instance {inst.name} (CiliumBGPClusterConfig {inst.cluster_config})",
        "# Generated by generators.twin from the rendered Cilium resources. Start with gobgpd -r",
        "# (local-restarting, as Cilium sets it for graceful restart).",
        "",
    ]
    lines += _global(inst, export_names)
    for peer in inst.configured_peers():
        lines += _neighbor(peer, inst.local_asn)
    lines += policy_lines
    return GoBgpInstance(
        instance=inst.name,
        config_path=f"/etc/twin/gobgpd-{inst.name}.toml",
        api_port=API_BASE_PORT + index,
        toml="\n".join(lines) + "\n",
        routes=tuple(sorted({a.prefix for a in mine})),
    )
