"""Preflight on the seed's own configs, and the helpers the other preflight tests build fixtures with.

Two seed directories:
- the rack render (``render_inventory('topology/rack.yml')``), which every check table mutates;
- a hand-written one, assembled from tests/fixtures/seed/ and then written the way users write
  (unindented frr.conf with comments and a version header, quoted booleans, ASNs as strings,
  flow lists, comma strings, Cilium values under ``cilium:``, a Service in apps/ among other
  documents). Both must give the same findings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from conftest import SEED
from generators.preflight import Report, run
from generators.readback.rendered import APISERVER_BGP, CILIUM_BGP, CILIUM_VALUES, FRR_CONF, PLATFORM_VALUES

NODES = {"cat01": "10.31.0.218", "cat02": "10.31.0.161", "cat03": "10.31.0.132"}
SEED_WARNINGS = {"TIMER-GR-COST"}  # the seed's only true warning: hold 15 + restart 120 with an N-bit gateway


class SeedDir:
    """A writable copy of a rendered directory with structural (not textual) YAML edits."""

    def __init__(self, root: Path, files: dict[str, str]):
        self.root = root
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")

    # -- YAML ------------------------------------------------------------------------------------
    def docs(self, rel: str) -> list[dict]:
        return [d for d in yaml.safe_load_all((self.root / rel).read_text()) if d is not None]

    def write_docs(self, rel: str, docs: list[dict]) -> None:
        (self.root / rel).write_text(yaml.safe_dump_all(docs, sort_keys=False))

    def edit_doc(self, rel: str, kind: str, fn: Callable[[dict], Any]) -> None:
        docs = self.docs(rel)
        target = next(d for d in docs if d.get("kind") == kind)
        fn(target)
        self.write_docs(rel, docs)

    def drop_doc(self, rel: str, kind: str) -> None:
        self.write_docs(rel, [d for d in self.docs(rel) if d.get("kind") != kind])

    def add_doc(self, rel: str, doc: dict) -> None:
        self.write_docs(rel, self.docs(rel) + [doc])

    def edit_values(self, rel: str, fn: Callable[[dict], Any]) -> None:
        (body,) = self.docs(rel)
        fn(body)
        self.write_docs(rel, [body])

    def edit_k3s(self, fn: Callable[[dict], Any], *nodes: str) -> None:
        for node in nodes or tuple(NODES):
            self.edit_values(f"k3s/{node}/config.yaml", fn)

    # -- text (frr.conf) ---------------------------------------------------------------------------
    def frr_sub(self, old: str, new: str) -> None:
        path = self.root / FRR_CONF
        text = path.read_text()
        assert old in text, f"{old!r} not in frr.conf:\n{text}"
        path.write_text(text.replace(old, new, 1))

    def remove(self, rel: str) -> None:
        (self.root / rel).unlink()

    def check(self, **kwargs: Any) -> Report:
        return run(self.root, **kwargs)


def seed_dir(tmp_path: Path, files: dict[str, str]) -> SeedDir:
    return SeedDir(tmp_path / "rendered", {k: v for k, v in files.items() if k != "MANIFEST.json"})


# -- the hand-written variant --------------------------------------------------------------------------


def _k3s_from_fixture(node: str) -> dict:
    shown = yaml.safe_load((SEED / "k3s-config.yaml").read_text())
    config: dict = {}
    if node == "cat01":
        config["cluster-init"] = True
    else:
        config["server"] = "https://10.31.0.218:6443"
        config["token-file"] = "/etc/rancher/k3s/cluster-token"
    config.update({"node-ip": NODES[node], "node-label": ["node.kubernetes.io/instance-type=bare-metal"]})
    config.update(shown)
    config.update({"flannel-backend": "none", "disable-network-policy": True})
    return config


def fixture_files() -> dict[str, str]:
    """The seed's reference configs (tests/fixtures/seed) in the rendered layout, as they are."""
    read = lambda name: (SEED / name).read_text()  # noqa: E731
    files = {
        CILIUM_BGP: read("cilium-bgp.yaml"),
        APISERVER_BGP: read("kube-apiserver-bgp.yaml"),
        CILIUM_VALUES: read("cilium-values.yaml"),
        PLATFORM_VALUES: read("traefik-values.yaml") + read("platform-extras.yaml"),
        "apps/httproute-foobar.yaml": read("httproute-foobar.yaml"),
        FRR_CONF: read("frr.conf"),
    }
    for node in NODES:
        files[f"k3s/{node}/config.yaml"] = yaml.safe_dump(_k3s_from_fixture(node), sort_keys=False)
    return files


HAND_FRR = """frr version 8.4.4_git
frr defaults traditional
hostname ucg
!
router bgp 64512
bgp router-id 10.31.0.1
no bgp ebgp-requires-policy
no bgp default ipv4-unicast
! the nodes
neighbor k3s-nodes peer-group
neighbor k3s-nodes remote-as 65000
neighbor 10.31.0.218 peer-group k3s-nodes
neighbor 10.31.0.161 peer-group k3s-nodes
neighbor 10.31.0.132 peer-group k3s-nodes
!
address-family ipv4 unicast
neighbor k3s-nodes activate
neighbor k3s-nodes soft-reconfiguration inbound
exit-address-family
exit
!
line vty
"""

HAND_BGP = """# pool, cluster config, peer config, advertisement -- written by hand
apiVersion: cilium.io/v2
kind: CiliumLoadBalancerIPPool
metadata: {name: bgp-pool}
spec:
  blocks: [{cidr: 10.31.0.80/28}]
---
apiVersion: cilium.io/v2
kind: CiliumBGPClusterConfig
metadata:
  name: cilium-bgp
spec:
  nodeSelector:
    matchLabels: {"node.kubernetes.io/instance-type": "bare-metal"}
  bgpInstances:
  - name: k3s-bgp
    localASN: "65000"        # as a string
    peers:
    - name: ucg-fiber
      peerASN: '64512'
      peerAddress: 10.31.0.1
      peerConfigRef: {name: ucg-fiber-peer}
---
---
apiVersion: cilium.io/v2
kind: CiliumBGPPeerConfig
metadata:
  name: ucg-fiber-peer
spec:
  timers: {holdTimeSeconds: "15", keepAliveTimeSeconds: 5}
  gracefulRestart: {enabled: "true", restartTimeSeconds: 120}
  families:
  - {afi: ipv4, safi: unicast, advertisements: {matchLabels: {advertise: "bgp"}}}
---
apiVersion: cilium.io/v2
kind: CiliumBGPAdvertisement
metadata:
  name: lb-services
  labels: {advertise: bgp}
spec:
  advertisements:
  - advertisementType: Service
    service: {addresses: [LoadBalancerIP]}
    selector:
      matchExpressions: [{key: app.kubernetes.io/name, operator: Exists}]
"""


def hand_written_files() -> dict[str, str]:
    files = fixture_files()
    files[FRR_CONF] = HAND_FRR
    files[CILIUM_BGP] = HAND_BGP
    files[CILIUM_VALUES] = (
        "# umbrella chart: Cilium's values under cilium:\n"
        "cilium:\n  operator: {replicas: 1}\n  bgpControlPlane: {enabled: 'true'}\n"
        "  kubeProxyReplacement: \"true\"\n  envoyConfig:\n    enabled: true\n"
    )
    # The Service moves to apps/, between two other documents; the rest of the file stays.
    apiserver = list(yaml.safe_load_all(files[APISERVER_BGP]))
    service = next(d for d in apiserver if d["kind"] == "Service")
    files[APISERVER_BGP] = yaml.safe_dump_all([d for d in apiserver if d["kind"] != "Service"], sort_keys=False)
    files["apps/kube-apiserver/service.yml"] = (
        "---\n# comment first\n---\n"
        + yaml.safe_dump(service, sort_keys=False)
        + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: kube-system}\ndata: {a: b}\n"
    )
    for node in NODES:
        config = _k3s_from_fixture(node)
        config["disable"] = "traefik,metrics-server,servicelb"
        config["disable-kube-proxy"] = "true"
        config["tls-san"] = ",".join(config["tls-san"])
        text = yaml.safe_dump(config, sort_keys=False, default_flow_style=True)
        files[f"k3s/{node}/config.yaml"] = f"# {node}\n{text}"
    return files


# -- tests -----------------------------------------------------------------------------------------------


def test_rack_render_has_no_error_and_only_the_true_warnings(tmp_path, rack_files):
    report = seed_dir(tmp_path, rack_files).check()
    assert report.errors == []
    assert report.ids("warning") == SEED_WARNINGS
    (gr,) = report.warnings
    assert gr.file == CILIUM_BGP and gr.document == "CiliumBGPPeerConfig/ucg-fiber-peer"
    assert "15 + 120 = 135 s" in gr.message and "assuming 8.3 or later" in gr.message


def test_fixture_seed_gives_the_same_findings_as_the_rack_render(tmp_path, rack_files):
    rack = seed_dir(tmp_path / "a", rack_files).check()
    fixture = seed_dir(tmp_path / "b", fixture_files()).check()
    assert [(f.id, f.file, f.document, f.path) for f in fixture.findings] == [
        (f.id, f.file, f.document, f.path) for f in rack.findings
    ]


def test_hand_written_variant_is_read_like_the_seed(tmp_path):
    report = seed_dir(tmp_path, hand_written_files()).check()
    assert report.errors == [], report.render_text()
    assert report.ids("warning") == SEED_WARNINGS
    assert report.frr_version.value == "8.4.4_git" and report.frr_version.source == "frr/frr.conf line 1"
    assert "FRR 8.4.4_git (from frr/frr.conf line 1) supports the N-bit" in report.warnings[0].message
    assert "apps/kube-apiserver/service.yml" in report.files


def test_hand_written_variant_still_catches_mistakes(tmp_path):
    """Tolerance must not mean blindness: the quirky files still fire on a real mistake."""
    files = hand_written_files()
    files["apps/kube-apiserver/service.yml"] = files["apps/kube-apiserver/service.yml"].replace(
        "externalTrafficPolicy: Cluster", "externalTrafficPolicy: Local"
    )
    files[CILIUM_BGP] = files[CILIUM_BGP].replace("peerASN: '64512'", "peerASN: '64513'")
    report = seed_dir(tmp_path, files).check()
    assert report.ids("error") == {"CCEC-ETP-LOCAL", "GW-PEER-ASN"}
    etp = next(f for f in report.errors if f.id == "CCEC-ETP-LOCAL")
    assert etp.file == "apps/kube-apiserver/service.yml"


@pytest.mark.parametrize(
    "frr_version, header, expect",
    [
        ("8.1", None, set()),  # no N-bit before 8.3: a silent loss ends at hold expiry
        ("8.3", None, {"TIMER-GR-COST"}),
        ("10.2.1", None, {"TIMER-GR-COST"}),
        (None, "frr version 8.1.0\n", set()),
        (None, "frr version 8.4.4_git\n", {"TIMER-GR-COST"}),
        ("8.4.4", "frr version 8.1.0\n", {"TIMER-GR-COST"}),  # the argument wins over the file
    ],
)
def test_graceful_restart_warning_follows_the_gateway_frr_version(tmp_path, rack_files, frr_version, header, expect):
    seed = seed_dir(tmp_path, rack_files)
    if header:
        seed.frr_sub("router bgp", header + "router bgp")
    report = seed.check(frr_version=frr_version)
    assert report.errors == []
    assert report.ids("warning") == expect


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(
            lambda s: s.edit_doc(
                CILIUM_BGP, "CiliumBGPPeerConfig", lambda d: d["spec"]["gracefulRestart"].update(enabled=False)
            ),
            id="gr-off",
        ),
        pytest.param(
            lambda s: s.edit_doc(
                CILIUM_BGP, "CiliumBGPPeerConfig", lambda d: d["spec"]["gracefulRestart"].update(restartTimeSeconds=15)
            ),
            id="restart-not-above-hold",
        ),
        pytest.param(  # per neighbor: FRR 8.4 ignores graceful-restart-disable on a peer-group (docs/FACTS.md)
            lambda s: [
                s.frr_sub(f" neighbor {ip} peer-group k3s-nodes\n",
                          f" neighbor {ip} peer-group k3s-nodes\n neighbor {ip} graceful-restart-disable\n")
                for ip in ("10.31.0.218", "10.31.0.161", "10.31.0.132")
            ],
            id="gateway-helper-off",
        ),
        pytest.param(
            lambda s: s.frr_sub(
                " no bgp default ipv4-unicast\n", " no bgp default ipv4-unicast\n bgp graceful-restart-disable\n"
            ),
            id="gateway-gr-off",
        ),
    ],
)
def test_graceful_restart_warning_goes_away_with_each_suggested_fix(tmp_path, rack_files, mutate):
    seed = seed_dir(tmp_path, rack_files)
    mutate(seed)
    report = seed.check()
    assert report.findings == [], report.render_text()


def test_gateway_timers_shorten_the_computed_window(tmp_path, rack_files):
    seed = seed_dir(tmp_path, rack_files)
    seed.frr_sub(
        " neighbor k3s-nodes remote-as 65000\n", " neighbor k3s-nodes remote-as 65000\n neighbor k3s-nodes timers 3 9\n"
    )
    (gr,) = seed.check().warnings
    assert "9 + 120 = 129 s" in gr.message
