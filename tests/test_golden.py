"""Golden: rendering topology/rack.yml gives the seed's documents (keys and values; order and comments free).

Where the project adds keys the seed does not show, each addition is listed here explicitly.
"""
from __future__ import annotations

import yaml

from conftest import SEED

NODES = {"cat01": "10.31.0.218", "cat02": "10.31.0.161", "cat03": "10.31.0.132"}


def docs(text: str) -> list:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def seed_docs(name: str) -> list:
    return docs((SEED / name).read_text())


def frr_statements(text: str) -> list[str]:
    """FRR config as FRR reads it: one statement a line, indentation and `!` separators free."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("!")]


def test_frr_conf_equals_seed(rack_files):
    assert frr_statements(rack_files["frr/frr.conf"]) == frr_statements((SEED / "frr.conf").read_text())


def test_cilium_bgp_resources_equal_seed(rack_files):
    assert docs(rack_files["cilium/bgp.yaml"]) == seed_docs("cilium-bgp.yaml")


def test_apiserver_vip_documents_equal_seed(rack_files):
    assert docs(rack_files["cilium/kube-apiserver-bgp.yaml"]) == seed_docs("kube-apiserver-bgp.yaml")


def test_cilium_values_are_seed_plus_kube_proxy_free_apiserver_address(rack_files):
    (rendered,) = docs(rack_files["cilium/values.yaml"])
    (seed,) = seed_docs("cilium-values.yaml")
    additions = {"k8sServiceHost": "127.0.0.1", "k8sServicePort": 6443}  # k3s without kube-proxy needs both
    assert rendered == {**seed, **additions}


def test_platform_values_are_seed_blocks(rack_files):
    (rendered,) = docs(rack_files["platform/values.yaml"])
    (traefik,) = seed_docs("traefik-values.yaml")
    (extras,) = seed_docs("platform-extras.yaml")
    assert rendered == {**traefik, **extras}


def test_httproute_equals_seed(rack_files):
    assert docs(rack_files["apps/httproute-foobar.yaml"]) == seed_docs("httproute-foobar.yaml")


def test_k3s_configs_are_seed_plus_stated_additions(rack_files):
    (seed,) = seed_docs("k3s-config.yaml")
    for i, (node, ip) in enumerate(NODES.items()):
        (rendered,) = docs(rack_files[f"k3s/{node}/config.yaml"])
        additions = {
            "flannel-backend": "none",  # Cilium is the only CNI
            "disable-network-policy": True,  # Cilium enforces policy
            "node-label": ["node.kubernetes.io/instance-type=bare-metal"],  # what the BGP cluster config selects
            "node-name": node,
            "node-ip": ip,
        }
        if i == 0:
            additions["cluster-init"] = True  # the first server starts embedded etcd
        else:
            additions["server"] = "https://10.31.0.218:6443"  # joiners join the first server
            additions["token-file"] = "/etc/rancher/k3s/cluster-token"  # a path, never the secret
        assert rendered == {**seed, **additions}, node


def test_cluster_wide_k3s_keys_identical_on_all_servers(rack_files):
    per_node = [docs(rack_files[f"k3s/{n}/config.yaml"])[0] for n in NODES]
    per_node_keys = {"cluster-init", "server", "token-file", "node-name", "node-ip"}
    shared = [{k: v for k, v in c.items() if k not in per_node_keys} for c in per_node]
    assert shared[0] == shared[1] == shared[2]


def test_no_secret_in_k3s_configs(rack_files):
    for rel, text in rack_files.items():
        if rel.startswith("k3s/"):
            assert "token:" not in text.replace("token-file:", "")


def test_rendered_layout_is_the_contract(rack_files):
    assert sorted(rack_files) == sorted([
        "MANIFEST.json", "apps/httproute-foobar.yaml", "cilium/bgp.yaml", "cilium/kube-apiserver-bgp.yaml",
        "cilium/values.yaml", "frr/daemons", "frr/frr.conf", "k3s/cat01/config.yaml", "k3s/cat02/config.yaml",
        "k3s/cat03/config.yaml", "platform/values.yaml",
    ])
