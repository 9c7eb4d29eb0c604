"""Every preflight check: one mistake in the seed's rendered configs fires exactly that check.

Each row is (check id, base, mutation). The base is the rack render, or a variant of it that is
itself clean (asserted in test_every_base_is_clean); the mutation is one mistake. For an error
check, the set of error ids must be exactly {id}; for a warning check, there must be no error and
the warnings must be the base's plus {id}. The base's warnings are the seed's TIMER-GR-COST (see
README.md) except for the "short-restart" base, which has none.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest
from test_preflight_seed import SEED_WARNINGS, SeedDir, seed_dir

from generators.preflight import CHECKS
from generators.readback.rendered import APISERVER_BGP, CILIUM_BGP, CILIUM_VALUES, FRR_CONF, PLATFORM_VALUES

Mutation = Callable[[SeedDir], None]


# -- bases -----------------------------------------------------------------------------------------------


def _kube_proxy_still_on(s: SeedDir) -> None:
    """Before the migration: Cilium's replacement not yet on, so k3s still runs kube-proxy."""
    s.edit_k3s(lambda c: c.pop("disable-kube-proxy"))


def _no_envoy_config(s: SeedDir) -> None:
    """A user who does not put Envoy in front of the apiserver."""
    s.drop_doc(APISERVER_BGP, "CiliumClusterwideEnvoyConfig")


def _two_asns(s: SeedDir) -> None:
    """cat03 in AS 65001 through its own ClusterConfig; the gateway takes any external AS, with multipath-relax."""

    def first(d: dict) -> None:
        d["spec"]["nodeSelector"]["matchExpressions"] = [
            {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["cat03"]}
        ]

    s.edit_doc(CILIUM_BGP, "CiliumBGPClusterConfig", first)
    cat03 = next(d for d in s.docs(CILIUM_BGP) if d["kind"] == "CiliumBGPClusterConfig")
    cat03["metadata"]["name"] = "cilium-bgp-cat03"
    cat03["spec"]["nodeSelector"] = {"matchLabels": {"kubernetes.io/hostname": "cat03"}}
    cat03["spec"]["bgpInstances"][0]["localASN"] = 65001
    s.add_doc(CILIUM_BGP, cat03)
    s.frr_sub("neighbor k3s-nodes remote-as 65000", "neighbor k3s-nodes remote-as external")
    s.frr_sub(" no bgp default ipv4-unicast\n", " no bgp default ipv4-unicast\n bgp bestpath as-path multipath-relax\n")


def _short_restart(s: SeedDir) -> None:
    _set_peer(s, lambda spec: spec["gracefulRestart"].update(restartTimeSeconds=10))


BASES: dict[str, tuple[Mutation | None, set[str]]] = {
    "seed": (None, SEED_WARNINGS),
    "kube-proxy-on": (_kube_proxy_still_on, SEED_WARNINGS),
    "no-envoy": (_no_envoy_config, SEED_WARNINGS),
    "two-asns": (_two_asns, SEED_WARNINGS),
    "short-restart": (_short_restart, set()),
}


# -- mutation helpers ------------------------------------------------------------------------------------


def _set_peer(s: SeedDir, fn: Callable[[dict], object]) -> None:
    s.edit_doc(CILIUM_BGP, "CiliumBGPPeerConfig", lambda d: fn(d["spec"]))


def _set_cluster_peer(s: SeedDir, **values: object) -> None:
    s.edit_doc(CILIUM_BGP, "CiliumBGPClusterConfig", lambda d: d["spec"]["bgpInstances"][0]["peers"][0].update(values))


def _set_cilium(s: SeedDir, fn: Callable[[dict], object]) -> None:
    s.edit_values(CILIUM_VALUES, fn)


def _set_traefik_vip(s: SeedDir, vip: str) -> None:
    s.edit_values(
        PLATFORM_VALUES,
        lambda v: v["traefik"]["values"]["service"]["annotations"].update({"lbipam.cilium.io/ips": vip}),
    )


def _ccec(fn: Callable[[dict], object]) -> Mutation:
    return lambda s: s.edit_doc(APISERVER_BGP, "CiliumClusterwideEnvoyConfig", fn)


def _service(fn: Callable[[dict], object]) -> Mutation:
    return lambda s: s.edit_doc(APISERVER_BGP, "Service", fn)


def _eps(fn: Callable[[dict], object]) -> Mutation:
    return lambda s: s.edit_doc(APISERVER_BGP, "EndpointSlice", fn)


def _jitter(d: dict) -> None:
    d["spec"]["resources"][1]["health_checks"][0]["interval_jitter"] = "100ms"


def _unquoted_annotation(d: dict) -> None:
    d["metadata"]["annotations"]["cec.cilium.io/use-original-source-address"] = False


def _lowercase_operator(d: dict) -> None:
    d["spec"]["advertisements"][0]["selector"]["matchExpressions"][0]["operator"] = "exists"


def _second_initializer(c: dict) -> None:
    c.pop("server")
    c.pop("token-file")
    c["cluster-init"] = True


# -- the table -------------------------------------------------------------------------------------------

CASES: list[tuple[str, str, Mutation]] = [
    # input
    ("PREFLIGHT-FILE-MISSING", "seed", lambda s: s.remove(FRR_CONF)),
    (
        "K8S-MALFORMED",
        "seed",
        lambda s: s.edit_doc("apps/httproute-foobar.yaml", "HTTPRoute", lambda d: d.update(spec=[d["spec"]])),
    ),
    ("K8S-NOT-STRING", "seed", _ccec(_unquoted_annotation)),
    ("K8S-SELECTOR-INVALID", "seed", lambda s: s.edit_doc(CILIUM_BGP, "CiliumBGPAdvertisement", _lowercase_operator)),
    ("CILIUM-KPR-VALUE", "seed", lambda s: _set_cilium(s, lambda v: v.update(kubeProxyReplacement="strict"))),
    # envoy
    ("CCEC-ETP-LOCAL", "seed", _service(lambda d: d["spec"].update(externalTrafficPolicy="Local"))),
    ("CCEC-DURATION", "seed", _ccec(_jitter)),
    ("CCEC-ORIGINAL-SOURCE", "seed", _ccec(lambda d: d["metadata"].pop("annotations"))),
    ("CCEC-KPR", "kube-proxy-on", lambda s: _set_cilium(s, lambda v: v.update(kubeProxyReplacement=False))),
    ("CCEC-ENVOYCONFIG", "seed", lambda s: _set_cilium(s, lambda v: v["envoyConfig"].update(enabled=False))),
    # BGP wiring
    ("BGP-CONTROLPLANE-OFF", "seed", lambda s: _set_cilium(s, lambda v: v["bgpControlPlane"].update(enabled=False))),
    ("BGP-SERVICE-NOT-ADVERTISED", "seed", _service(lambda d: d["metadata"].pop("labels"))),
    (
        "BGP-PEERCONFIG-NO-ADVERTISEMENT",
        "seed",
        lambda s: _set_peer(
            s, lambda spec: spec["families"][0]["advertisements"]["matchLabels"].update(advertise="bgpp")
        ),
    ),
    ("BGP-PEERCONFIG-MISSING", "seed", lambda s: _set_cluster_peer(s, peerConfigRef={"name": "ucg-peer"})),
    (
        "BGP-NODESELECTOR-NO-NODE",
        "seed",
        lambda s: s.edit_doc(
            CILIUM_BGP,
            "CiliumBGPClusterConfig",
            lambda d: d["spec"]["nodeSelector"]["matchLabels"].update(
                {"node.kubernetes.io/instance-type": "baremetal"}
            ),
        ),
    ),
    ("BGP-NODESELECTOR-PARTIAL", "seed", lambda s: s.edit_k3s(lambda c: c.pop("node-label"), "cat03")),
    # gateway
    ("GW-NO-ROUTER-BGP", "seed", lambda s: (s.root / FRR_CONF).write_text("! the BGP block went missing\n")),
    ("GW-REMOTE-AS", "seed", lambda s: s.frr_sub("remote-as 65000", "remote-as 65001")),
    ("GW-PEER-ASN", "seed", lambda s: _set_cluster_peer(s, peerASN=64513)),
    ("GW-PEER-ADDRESS", "seed", lambda s: _set_cluster_peer(s, peerAddress="10.31.0.2")),
    ("GW-NEIGHBOR-MISSING", "seed", lambda s: s.frr_sub(" neighbor 10.31.0.132 peer-group k3s-nodes\n", "")),
    (
        "GW-NEIGHBOR-EXTRA",
        "seed",
        lambda s: s.frr_sub(
            " neighbor 10.31.0.132 peer-group k3s-nodes\n",
            " neighbor 10.31.0.132 peer-group k3s-nodes\n neighbor 10.31.0.150 peer-group k3s-nodes\n",
        ),
    ),
    ("GW-EBGP-POLICY", "seed", lambda s: s.frr_sub(" no bgp ebgp-requires-policy\n", "")),
    (
        "GW-MAXPATHS",
        "seed",
        lambda s: s.frr_sub("  neighbor k3s-nodes activate\n", "  neighbor k3s-nodes activate\n  maximum-paths 1\n"),
    ),
    ("GW-MULTIPATH-RELAX", "two-asns", lambda s: s.frr_sub(" bgp bestpath as-path multipath-relax\n", "")),
    ("GW-AF-NOT-ACTIVATED", "seed", lambda s: s.frr_sub("  neighbor k3s-nodes activate\n", "")),
    # addresses
    ("ADDR-VIP-OUTSIDE-POOL", "seed", lambda s: _set_traefik_vip(s, "10.31.0.100")),
    ("ADDR-VIP-DUPLICATE", "seed", lambda s: _set_traefik_vip(s, "10.31.0.80")),
    (
        "ADDR-VIP-NET-BCAST",
        "seed",
        lambda s: s.edit_doc(
            CILIUM_BGP, "CiliumLoadBalancerIPPool", lambda d: d["spec"].update(allowFirstLastIPs="No")
        ),
    ),
    (
        "ADDR-POOL-NODE-OVERLAP",
        "seed",
        lambda s: s.edit_doc(
            CILIUM_BGP, "CiliumLoadBalancerIPPool", lambda d: d["spec"]["blocks"].append({"cidr": "10.31.0.160/28"})
        ),
    ),
    (
        "ADDR-TLS-SAN",
        "seed",
        lambda s: s.edit_k3s(lambda c: c["tls-san"].remove("kube.dev.ber1.clustername.io"), "cat02"),
    ),
    ("ADDR-EPS-ADDRESSES", "seed", _eps(lambda d: d["endpoints"][2].update(addresses=["10.31.0.133"]))),
    ("ADDR-EPS-NODENAME", "seed", _eps(lambda d: d["endpoints"][2].update(nodeName="cat3"))),
    # timers
    ("TIMER-HOLD", "seed", lambda s: _set_peer(s, lambda spec: spec["timers"].update(holdTimeSeconds=2))),
    ("TIMER-KEEPALIVE", "seed", lambda s: _set_peer(s, lambda spec: spec["timers"].update(keepAliveTimeSeconds=10))),
    (
        "TIMER-GR-COST",
        "short-restart",
        lambda s: _set_peer(s, lambda spec: spec["gracefulRestart"].update(restartTimeSeconds=120)),
    ),
    # k3s
    ("K3S-NODE-IP", "seed", lambda s: s.edit_k3s(lambda c: c.pop("node-ip"), "cat03")),
    ("K3S-CLUSTER-KEYS", "seed", lambda s: s.edit_k3s(lambda c: c.update({"cluster-cidr": "10.52.0.0/16"}), "cat02")),
    ("K3S-FLANNEL", "seed", lambda s: s.edit_k3s(lambda c: c.update({"flannel-backend": "vxlan"}))),
    ("K3S-NETWORK-POLICY", "seed", lambda s: s.edit_k3s(lambda c: c.pop("disable-network-policy"))),
    ("K3S-SERVICELB", "seed", lambda s: s.edit_k3s(lambda c: c.update(disable=["traefik", "metrics-server"]))),
    ("K3S-CLUSTER-INIT", "seed", lambda s: s.edit_k3s(_second_initializer, "cat02")),
    ("K3S-KUBE-PROXY-ORDER", "no-envoy", lambda s: _set_cilium(s, lambda v: v.update(kubeProxyReplacement=False))),
]


def _build(tmp_path: Path, rack_files: dict[str, str], base: str) -> SeedDir:
    seed = seed_dir(tmp_path, rack_files)
    prepare, _ = BASES[base]
    if prepare is not None:
        prepare(seed)
    return seed


def test_every_check_has_exactly_one_case():
    assert sorted(c[0] for c in CASES) == sorted(CHECKS)


@pytest.mark.parametrize("base", sorted(BASES))
def test_every_base_is_clean(tmp_path, rack_files, base):
    report = _build(tmp_path, rack_files, base).check()
    assert report.errors == [], report.render_text()
    assert report.ids("warning") == BASES[base][1]


@pytest.mark.parametrize("check_id, base, mutate", CASES, ids=[c[0] for c in CASES])
def test_one_mistake_fires_its_check_only(tmp_path, rack_files, check_id, base, mutate):
    seed = _build(tmp_path, rack_files, base)
    mutate(seed)
    report = seed.check()
    base_warnings = BASES[base][1]
    if CHECKS[check_id].severity == "error":
        assert report.ids("error") == {check_id}, report.render_text()
        assert report.ids("warning") == base_warnings, report.render_text()
    else:
        assert report.ids("error") == set(), report.render_text()
        assert report.ids("warning") == base_warnings | {check_id}, report.render_text()
    for finding in report.findings:
        if finding.id == check_id:
            assert finding.file and finding.document and finding.path and finding.message and finding.fix


def test_findings_point_at_the_mistake(tmp_path, rack_files):
    seed = seed_dir(tmp_path, rack_files)
    _ccec(_jitter)(seed)
    (finding,) = seed.check().errors
    assert (finding.file, finding.document, finding.path) == (
        APISERVER_BGP,
        "CiliumClusterwideEnvoyConfig/kube-apiserver-bgp",
        "spec.resources[1].health_checks[0].interval_jitter",
    )
    assert '"0.1s"' in finding.fix and "Ignoring invalid CiliumEnvoyConfig JSON" in finding.message


def test_frr_findings_name_the_line(tmp_path, rack_files):
    seed = seed_dir(tmp_path, rack_files)
    seed.frr_sub("remote-as 65000", "remote-as 65001")
    (finding,) = seed.check().errors
    assert (finding.file, finding.document, finding.path) == (
        FRR_CONF,
        "router bgp 64512",
        "line 6: neighbor k3s-nodes remote-as 65001",
    )
    assert "cat01, cat02, cat03" in finding.message


@pytest.mark.parametrize("bad, good", [("100ms", "0.1s"), ("1m", "60s"), (5, "5s"), ("1.5", "<seconds>s")])
def test_duration_fix_suggests_seconds(tmp_path, rack_files, bad, good):
    seed = seed_dir(tmp_path, rack_files)
    _ccec(lambda d: d["spec"]["resources"][1].update(connect_timeout=bad))(seed)
    (finding,) = seed.check().errors
    assert finding.path == "spec.resources[1].connect_timeout" and good in finding.fix


def test_durations_in_camel_case_are_checked_too(tmp_path, rack_files):
    seed = seed_dir(tmp_path, rack_files)
    _ccec(lambda d: d["spec"]["resources"][1].update(connectTimeout="250ms"))(seed)
    assert {f.path for f in seed.check().errors} == {"spec.resources[1].connectTimeout"}


def test_a_user_service_in_apps_is_checked(tmp_path, rack_files):
    seed = seed_dir(tmp_path, rack_files)
    (seed.root / "apps" / "whoami.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: whoami\n  namespace: web\n"
        "  annotations: {lbipam.cilium.io/ips: 10.31.0.82}\n"
        "spec: {type: LoadBalancer, ports: [{port: 80}]}\n"
    )
    report = seed.check()
    assert report.ids("error") == {"BGP-SERVICE-NOT-ADVERTISED"}
    assert report.errors[0].file == "apps/whoami.yaml" and report.errors[0].document == "Service/web/whoami"


def test_shared_vip_with_a_sharing_key_is_not_a_duplicate(tmp_path, rack_files):
    seed = seed_dir(tmp_path, rack_files)
    _set_traefik_vip(seed, "10.31.0.80")
    seed.edit_values(
        PLATFORM_VALUES,
        lambda v: v["traefik"]["values"]["service"]["annotations"].update({"lbipam.cilium.io/sharing-key": "edge"}),
    )
    _service(lambda d: d["metadata"]["annotations"].update({"lbipam.cilium.io/sharing-key": "edge"}))(seed)
    assert seed.check().errors == []


def test_dynamic_neighbors_count_as_neighbors(tmp_path, rack_files):
    seed = seed_dir(tmp_path, rack_files)
    seed.frr_sub(
        " neighbor 10.31.0.132 peer-group k3s-nodes\n", " bgp listen range 10.31.0.128/28 peer-group k3s-nodes\n"
    )
    assert seed.check().errors == []


def test_an_unrelated_gateway_neighbor_is_not_extra(tmp_path, rack_files):
    """The gateway may peer with other routers too: only neighbors set up like the nodes are suspects."""
    seed = seed_dir(tmp_path, rack_files)
    seed.frr_sub(
        " address-family ipv4 unicast\n", " neighbor 192.0.2.9 remote-as 65500\n address-family ipv4 unicast\n"
    )
    assert seed.check().ids() == SEED_WARNINGS


def test_inbound_route_map_satisfies_ebgp_policy(tmp_path, rack_files):
    seed = seed_dir(tmp_path, rack_files)
    seed.frr_sub(" no bgp ebgp-requires-policy\n", "")
    seed.frr_sub(
        "  neighbor k3s-nodes activate\n", "  neighbor k3s-nodes activate\n  neighbor k3s-nodes route-map ALL in\n"
    )
    assert seed.check().errors == []


def test_preflight_reads_files_not_the_inventory_model():
    """The checks must work on a user's hand-written directory: no import of model/inventory/render."""
    forbidden = {"generators.model", "generators.inventory", "generators.render"}
    package = Path(__file__).resolve().parent.parent / "generators" / "preflight"
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            assert not forbidden & set(names), f"{source.name} imports {forbidden & set(names)}"


FRR_CASES = [c for c in CASES if c[0].startswith("GW-") and c[0] != "GW-NO-ROUTER-BGP"]


@pytest.mark.skipif(shutil.which("vtysh") is None, reason="needs FRR's vtysh (invoke test installs it)")
@pytest.mark.parametrize("check_id, base, mutate", FRR_CASES, ids=[c[0] for c in FRR_CASES])
def test_frr_mistakes_are_valid_frr_syntax(tmp_path, rack_files, check_id, base, mutate):
    """The gateway mistakes are ones FRR accepts (vtysh --dryrun exits 2 on a bad line): only preflight sees them."""
    seed = _build(tmp_path, rack_files, base)
    mutate(seed)
    result = subprocess.run(
        ["vtysh", "--dryrun", "-f", str(seed.root / FRR_CONF)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


M = "K8S-MALFORMED"
ODD_SHAPES: list[tuple[Mutation, set[str]]] = [
    (_service(lambda d: d.update(spec=None)), set()),  # nothing left to check on it
    (_service(lambda d: d["spec"].update(ports="6443")), {M}),
    (_eps(lambda d: d.update(endpoints="10.31.0.218")), {M, "ADDR-EPS-ADDRESSES"}),
    (_eps(lambda d: d["endpoints"].append("10.31.0.99")), {M}),
    (_ccec(lambda d: d["spec"].update(resources={"name": "x"})), {M}),
    (_ccec(lambda d: d["spec"].update(services=["kube-apiserver-bgp"])), {M}),
    (
        lambda s: s.edit_doc(CILIUM_BGP, "CiliumBGPClusterConfig", lambda d: d["spec"].update(bgpInstances={"a": 1})),
        {M},
    ),
    (
        lambda s: s.edit_doc(CILIUM_BGP, "CiliumBGPClusterConfig", lambda d: d["spec"].update(nodeSelector="all")),
        {"K8S-SELECTOR-INVALID"},
    ),
    (
        lambda s: s.edit_doc(
            CILIUM_BGP, "CiliumLoadBalancerIPPool", lambda d: d["spec"].update(blocks="10.31.0.80/28")
        ),
        {M, "ADDR-VIP-OUTSIDE-POOL"},
    ),
    (
        lambda s: s.edit_doc(
            CILIUM_BGP, "CiliumLoadBalancerIPPool", lambda d: d["spec"].update(blocks=[{"cidr": "x/99"}])
        ),
        {"ADDR-VIP-OUTSIDE-POOL"},
    ),
    (lambda s: _set_peer(s, lambda spec: spec.update(timers="fast", families={"afi": "ipv4"})), {M}),
    (
        lambda s: _set_cilium(s, lambda v: v.update(envoyConfig=True, bgpControlPlane=None)),
        {"BGP-CONTROLPLANE-OFF", "CCEC-ENVOYCONFIG"},
    ),
    (lambda s: s.edit_values(PLATFORM_VALUES, lambda v: v.update(traefik="enabled")), set()),
    (
        lambda s: s.edit_k3s(lambda c: c.update({"node-ip": ["x", 5], "tls-san": None, "disable": 7})),
        {"ADDR-TLS-SAN", "K3S-SERVICELB"},
    ),
    (
        lambda s: (s.root / FRR_CONF).write_text("router bgp\n neighbor\n address-family\n maximum-paths x\n"),
        {"GW-NO-ROUTER-BGP"},
    ),
]


@pytest.mark.parametrize("mutate, errors", ODD_SHAPES, ids=[f"odd-{i}" for i in range(len(ODD_SHAPES))])
def test_odd_shapes_give_findings_not_tracebacks(tmp_path, rack_files, mutate, errors):
    seed = seed_dir(tmp_path, rack_files)
    mutate(seed)
    assert seed.check().ids("error") == errors
