"""The tolerant FRR `router bgp` parser: the seed's block, FRR's own writer output, hand-written blocks."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import SEED
from generators.readback.frrconf import parse_frr
from generators.versions import version_tuple

SEED_FRR = (SEED / "frr.conf").read_text()

WRITER_OUTPUT = """frr version 8.4.4_git
frr defaults traditional
hostname ucg-fiber
log syslog informational
service integrated-vtysh-config
!
router bgp 64512
 bgp router-id 10.31.0.1
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 bgp bestpath as-path multipath-relax
 bgp graceful-restart restart-time 90
 timers bgp 10 30
 neighbor k3s-nodes peer-group
 neighbor k3s-nodes remote-as external
 neighbor k3s-nodes timers 3 9
 neighbor k3s-nodes graceful-restart-disable
 neighbor 10.31.0.218 peer-group k3s-nodes
 neighbor 10.31.0.161 peer-group k3s-nodes
 neighbor 10.31.0.161 remote-as 65001
 bgp listen range 10.31.0.128/28 peer-group k3s-nodes
 !
 address-family ipv4 unicast
  neighbor k3s-nodes activate
  no neighbor 10.31.0.161 activate
  neighbor k3s-nodes soft-reconfiguration inbound
  neighbor k3s-nodes route-map FROM-NODES in
  neighbor k3s-nodes route-map TO-NODES out
  maximum-paths 8
  maximum-paths ibgp 4
 exit-address-family
exit
!
route-map FROM-NODES permit 10
exit
!
router bgp 65099 vrf mgmt
 neighbor 10.42.0.2 remote-as 65098
exit
!
line vty
!
"""


def test_seed_block_every_setting_with_its_line():
    cfg = parse_frr(SEED_FRR)
    bgp = cfg.bgp
    assert bgp is not None and (bgp.asn, bgp.line) == ("64512", 1)
    assert bgp.router_id.value == "10.31.0.1" and bgp.router_id.line == 2
    assert (bgp.ebgp_requires_policy, bgp.ebgp_requires_policy_line) == (False, 3)
    assert (bgp.default_ipv4_unicast, bgp.default_ipv4_unicast_line) == (False, 4)
    group = bgp.neighbors["k3s-nodes"]
    assert group.is_peer_group and group.defined_line == 5
    assert (group.remote_as.value, group.remote_as.line) == ("65000", 6)
    peers = bgp.peers()
    assert [p.name for p in peers] == ["10.31.0.218", "10.31.0.161", "10.31.0.132"]
    assert [p.peer_group.line for p in peers] == [7, 8, 9]
    assert all(bgp.effective_remote_as(p).value == "65000" for p in peers)
    family = bgp.address_family("ipv4", "unicast")
    assert family.line == 10
    assert family.activate == {"k3s-nodes": 11} and family.soft_reconfiguration == {"k3s-nodes": 12}
    assert all(bgp.is_activated(p) for p in peers)
    assert family.maximum_paths is None and bgp.multipath_relax is None
    assert bgp.route_map(peers[0], "in") is None
    assert cfg.version is None


def test_frr_writer_output_with_header_overrides_and_a_vrf():
    cfg = parse_frr(WRITER_OUTPUT)
    assert cfg.version.value == "8.4.4_git" and cfg.version.line == 1
    assert cfg.defaults.value == "traditional"
    assert [r.title for r in cfg.routers] == ["router bgp 64512", "router bgp 65099 vrf mgmt"]
    bgp = cfg.bgp
    assert bgp.multipath_relax.line == 11
    assert [s.text for s in bgp.graceful_restart] == ["bgp graceful-restart restart-time 90"]
    assert bgp.timers == (10, 30, 13)
    first, second = bgp.peers()
    assert bgp.effective_remote_as(first).value == "external"
    assert bgp.effective_remote_as(second).value == "65001"  # the neighbor's own wins over the group's
    assert bgp.effective_timers(first) == (3, 9, 16)
    assert bgp.group_of(first).graceful_restart.value == "graceful-restart-disable"
    assert bgp.listen_range_for("10.31.0.132") == ("10.31.0.128/28", "k3s-nodes", 21)
    assert bgp.listen_range_for("10.31.0.218") is None
    assert bgp.is_activated(first) and not bgp.is_activated(second)
    assert bgp.route_map(first, "in").value == "FROM-NODES" and bgp.route_map(first, "out").value == "TO-NODES"
    family = bgp.address_family()
    assert (family.maximum_paths.value, family.maximum_paths.line) == ("8", 29)
    assert family.maximum_paths_ibgp.value == "4"
    assert cfg.route_map_names == {"FROM-NODES": 34}
    assert "10.42.0.2" not in bgp.neighbors  # the VRF's neighbor belongs to the VRF's router


def test_unindented_jinja_style_block_with_comments():
    text = "\n".join(line.strip() for line in SEED_FRR.splitlines())
    text = text.replace("neighbor k3s-nodes peer-group\n", "!\n# a comment\nneighbor k3s-nodes peer-group\n")
    bgp = parse_frr(text).bgp
    assert [p.name for p in bgp.peers()] == ["10.31.0.218", "10.31.0.161", "10.31.0.132"]
    assert bgp.address_family().activate == {"k3s-nodes": 13}


def test_default_ipv4_unicast_activates_without_an_address_family():
    bgp = parse_frr("router bgp 64512\n neighbor 10.0.0.2 remote-as 65000\n").bgp
    (peer,) = bgp.peers()
    assert bgp.is_activated(peer) and bgp.ebgp_requires_policy


def test_family_commands_outside_an_address_family_mean_ipv4_unicast():
    bgp = parse_frr("router bgp 1\n no bgp default ipv4-unicast\n neighbor 10.0.0.2 remote-as 2\n"
                    " neighbor 10.0.0.2 activate\n maximum-paths 1\n").bgp
    assert bgp.is_activated(bgp.peers()[0])
    assert bgp.address_family().maximum_paths.value == "1"


def test_top_level_command_ends_the_router_block():
    bgp = parse_frr("router bgp 1\nneighbor 10.0.0.2 remote-as 2\ninterface eth0\nneighbor 10.0.0.3 remote-as 3\n").bgp
    assert [p.name for p in bgp.peers()] == ["10.0.0.2"]


def test_garbage_never_raises():
    cfg = parse_frr("router\nrouter bgp\nneighbor\n address-family\nrouter bgp 5\n neighbor x\n timers bgp a b\n"
                    " bgp\n no\n neighbor 10.0.0.1 timers x y\n exit-address-family\n exit\n exit\n")
    assert cfg.bgp.asn == "5" and [p.name for p in cfg.bgp.peers()] == ["10.0.0.1"]
    assert cfg.bgp.timers is None and cfg.bgp.peers()[0].timers is None


@pytest.mark.parametrize("text, expect", [("8.4.4_git", (8, 4, 4)), ("10.1", (10, 1, 0)), ("v9", (9, 0, 0)),
                                          ("8.1.0-1+pve", (8, 1, 0)), ("unknown", None)])
def test_version_tuple(text, expect):
    assert version_tuple(text) == expect


@pytest.mark.skipif(shutil.which("vtysh") is None, reason="needs FRR's vtysh (invoke test installs it)")
@pytest.mark.parametrize("text", [SEED_FRR, WRITER_OUTPUT], ids=["seed", "writer-output"])
def test_parsed_texts_are_valid_frr(tmp_path, text):
    """The texts this parser is tested on are real FRR configuration (vtysh --dryrun exits 2 on a bad line)."""
    path = tmp_path / "frr.conf"
    path.write_text(text)
    result = subprocess.run(["vtysh", "--dryrun", "-f", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
