"""The twin's Cilium semantics on rendered files: node selection, peers and timers, LB-IPAM, advertisements."""
from __future__ import annotations

import tomllib

import pytest
from test_twin_support import NODE_IP, edit_docs, find, rendered_files, write_rendered

from generators.twin import plan_twin
from generators.twin.scope import OutsideTwin

ALL_NODES = set(NODE_IP.values())
APISERVER = "kube-system/kube-apiserver-bgp"
TRAEFIK = "traefik/traefik"


@pytest.fixture(scope="module")
def base_files() -> dict[str, str]:
    return rendered_files()


def plan_of(files, tmp_path, **kw):
    return plan_twin(write_rendered(files, tmp_path / "r"), **kw)


def bgp_edit(files, change):
    return edit_docs(files, "cilium/bgp.yaml", change)


# ----------------------------------------------------------------- the rack as rendered

def test_rack_both_vips_on_all_three_nodes(base_files, tmp_path):
    plan = plan_of(base_files, tmp_path)
    assert plan.expected_next_hops == {"10.31.0.80": ALL_NODES, "10.31.0.81": ALL_NODES}
    assert plan.services[APISERVER].ips == ("10.31.0.80",)
    assert plan.services[TRAEFIK].ips == ("10.31.0.81",)
    assert plan.problems == []
    for node in plan.nodes.values():
        assert node.bgp_selected
        assert node.gobgp[0].routes == ("10.31.0.80/32", "10.31.0.81/32")


def test_traefik_service_has_the_chart_labels(base_files, tmp_path):
    exp = plan_of(base_files, tmp_path).services[TRAEFIK]
    assert exp.labels["app.kubernetes.io/name"] == "traefik"
    assert exp.labels["app.kubernetes.io/instance"] == "traefik-traefik"


def test_traefik_disabled_means_no_traefik_service(base_files, tmp_path):
    files = edit_docs(base_files, "platform/values.yaml", lambda d: d[0]["traefik"].update(enabled=False))
    plan = plan_of(files, tmp_path)
    assert TRAEFIK not in plan.services
    assert "10.31.0.81" not in plan.expected_next_hops


# ----------------------------------------------------------------- node selection

def test_node_label_mismatch_means_no_bgp_on_that_node(base_files, tmp_path):
    files = edit_docs(base_files, "k3s/cat02/config.yaml",
                      lambda d: d[0].update({"node-label": ["node.kubernetes.io/instance-type=vm"]}))
    plan = plan_of(files, tmp_path)
    cat02 = plan.nodes["cat02"]
    assert not cat02.bgp_selected and cat02.gobgp == [] and cat02.route_commands() == []
    assert "instance-type=vm" in cat02.bgp.reason and "not selected" in cat02.bgp.reason
    assert plan.expected_next_hops["10.31.0.80"] == ALL_NODES - {"10.31.0.161"}
    why = plan.services[APISERVER].nodes["cat02"].why_not
    assert any("runs no BGP" in w for w in why)
    # the data path still runs there: Cilium's proxy does not depend on BGP
    assert "haproxy" in cat02.processes()


def test_without_node_label_k3s_sets_instance_type_k3s(base_files, tmp_path):
    files = edit_docs(base_files, "k3s/cat03/config.yaml", lambda d: d[0].pop("node-label"))
    plan = plan_of(files, tmp_path)
    assert plan.nodes["cat03"].labels["node.kubernetes.io/instance-type"] == "k3s"
    assert not plan.nodes["cat03"].bgp_selected


def test_absent_node_selector_selects_every_node(base_files, tmp_path):
    files = bgp_edit(base_files, lambda d: find(d, "CiliumBGPClusterConfig")["spec"].pop("nodeSelector"))
    plan = plan_of(files, tmp_path)
    assert all(n.bgp_selected for n in plan.nodes.values())


def test_two_cluster_configs_on_one_node_are_outside_the_twin(base_files, tmp_path):
    """Cilium 1.19.3 keeps advertising (differential corpus: duplicate-clusterconfig); the twin refuses to guess."""
    def add_second(docs):
        import copy
        second = copy.deepcopy(find(docs, "CiliumBGPClusterConfig"))
        second["metadata"]["name"] = "second"
        docs.append(second)
    with pytest.raises(OutsideTwin) as err:
        plan_of(bgp_edit(base_files, add_second), tmp_path)
    assert err.value.exit_code == 2 and "lab.fidelity: cilium" in str(err.value)
    assert any("node cat01 is selected by 2 CiliumBGPClusterConfigs" in r for r in err.value.details)


# ----------------------------------------------------------------- peers, timers, graceful restart

def neighbor(plan, node="cat01"):
    return tomllib.loads(plan.nodes[node].gobgp[0].toml)["neighbors"][0]


def test_toml_global_and_neighbor_as_cilium_sets_them(base_files, tmp_path):
    plan = plan_of(base_files, tmp_path)
    conf = tomllib.loads(plan.nodes["cat03"].gobgp[0].toml)
    assert conf["global"]["config"] == {"as": 65000, "router-id": "10.31.0.132", "port": -1}
    n = conf["neighbors"][0]
    assert n["config"] == {"neighbor-address": "10.31.0.1", "peer-as": 64512}
    assert n["timers"]["config"] == {"connect-retry": 120, "hold-time": 15, "keepalive-interval": 5,
                                     "idle-hold-time-after-reset": 5}
    assert n["graceful-restart"]["config"] == {"enabled": True, "restart-time": 120, "notification-enabled": True}
    assert [a["config"]["afi-safi-name"] for a in n["afi-safis"]] == ["ipv4-unicast"]
    assert all(a["mp-graceful-restart"]["config"]["enabled"] for a in n["afi-safis"])
    assert "ebgp-multihop" not in n
    assert conf["global"]["apply-policy"]["config"]["default-export-policy"] == "reject-route"
    assert conf["global"]["apply-policy"]["config"]["default-import-policy"] == "reject-route"
    # local-restarting is GoBGP state: set by gobgpd -r, as Cilium sets it with GR on
    assert "-r" in plan.nodes["cat03"].gobgp[0].daemon_argv()


def test_peer_config_defaults_when_fields_are_absent(base_files, tmp_path):
    def strip(docs):
        spec = find(docs, "CiliumBGPPeerConfig")["spec"]
        spec.pop("timers")
        spec["gracefulRestart"] = {"enabled": True}
    n = neighbor(plan_of(bgp_edit(base_files, strip), tmp_path))
    assert n["timers"]["config"] == {"connect-retry": 120, "hold-time": 90, "keepalive-interval": 30,
                                     "idle-hold-time-after-reset": 5}
    assert n["graceful-restart"]["config"]["restart-time"] == 120
    assert n["transport"]["config"]["remote-port"] == 179


def test_graceful_restart_off_turns_off_per_family_gr(base_files, tmp_path):
    def off(docs):
        find(docs, "CiliumBGPPeerConfig")["spec"].pop("gracefulRestart")
    n = neighbor(plan_of(bgp_edit(base_files, off), tmp_path))
    assert "graceful-restart" not in n
    assert [a["mp-graceful-restart"]["config"]["enabled"] for a in n["afi-safis"]] == [False]


def test_ebgp_multihop_only_above_one(base_files, tmp_path):
    def ttl(value):
        return lambda docs: find(docs, "CiliumBGPPeerConfig")["spec"].update(ebgpMultihop=value)
    assert "ebgp-multihop" not in neighbor(plan_of(bgp_edit(base_files, ttl(1)), tmp_path / "a"))
    n = neighbor(plan_of(bgp_edit(base_files, ttl(3)), tmp_path / "b"))
    assert n["ebgp-multihop"]["config"] == {"enabled": True, "multihop-ttl": 3}


def test_families_default_to_ipv6_and_ipv4_without_advertisements(base_files, tmp_path):
    plan = plan_of(bgp_edit(base_files, lambda d: find(d, "CiliumBGPPeerConfig")["spec"].pop("families")), tmp_path)
    assert [a["config"]["afi-safi-name"] for a in neighbor(plan)["afi-safis"]] == ["ipv6-unicast", "ipv4-unicast"]
    assert plan.expected_next_hops["10.31.0.80"] == set()
    assert any("no advertisements selector" in w for w in plan.services[APISERVER].nodes["cat01"].why_not)


def test_missing_peer_config_skips_the_peer(base_files, tmp_path):
    def rename(docs):
        find(docs, "CiliumBGPPeerConfig")["metadata"]["name"] = "other"
    plan = plan_of(bgp_edit(base_files, rename), tmp_path)
    conf = tomllib.loads(plan.nodes["cat01"].gobgp[0].toml)
    assert "neighbors" not in conf
    assert plan.expected_next_hops["10.31.0.81"] == set()
    why = " ".join(plan.services[TRAEFIK].nodes["cat01"].why_not)
    assert "references CiliumBGPPeerConfig ucg-fiber-peer, which does not exist" in why


def test_absent_peer_config_ref_uses_defaults_and_advertises_nothing(base_files, tmp_path):
    def drop_ref(docs):
        find(docs, "CiliumBGPClusterConfig")["spec"]["bgpInstances"][0]["peers"][0].pop("peerConfigRef")
    plan = plan_of(bgp_edit(base_files, drop_ref), tmp_path)
    n = neighbor(plan)
    assert n["timers"]["config"]["hold-time"] == 90 and "graceful-restart" not in n
    assert plan.expected_next_hops["10.31.0.80"] == set()


def test_local_port_makes_gobgp_listen(base_files, tmp_path):
    def port(docs):
        find(docs, "CiliumBGPClusterConfig")["spec"]["bgpInstances"][0]["localPort"] = 179
    conf = tomllib.loads(plan_of(bgp_edit(base_files, port), tmp_path).nodes["cat01"].gobgp[0].toml)
    assert conf["global"]["config"]["port"] == 179


# ----------------------------------------------------------------- LB-IPAM

def svc_edit(files, change):
    return edit_docs(files, "cilium/kube-apiserver-bgp.yaml", lambda d: change(find(d, "Service")))


def test_pinned_ip_outside_every_pool_gets_no_ip(base_files, tmp_path):
    files = svc_edit(base_files, lambda s: s["metadata"]["annotations"].update({"lbipam.cilium.io/ips": "10.31.0.200"}))
    exp = plan_of(files, tmp_path).services[APISERVER]
    assert exp.ips == ()
    assert "no enabled CiliumLoadBalancerIPPool has a block containing 10.31.0.200" in exp.ip_reason
    assert all("has no LoadBalancer IP" in " ".join(v.why_not) for v in exp.nodes.values())


def test_pinned_ip_in_pool_that_does_not_select_the_service(base_files, tmp_path):
    def selector(docs):
        find(docs, "CiliumLoadBalancerIPPool")["spec"]["serviceSelector"] = {"matchLabels": {"pool": "bgp"}}
    exp = plan_of(bgp_edit(base_files, selector), tmp_path).services[APISERVER]
    assert exp.ips == () and "does not select this Service" in exp.ip_reason


def test_unpinned_service_gets_first_free_address_network_address_included(base_files, tmp_path):
    # allowFirstLastIPs unset means Yes in Cilium 1.19: 10.31.0.80 (the /28's first address) is allocatable.
    def unpin(s):
        s["metadata"]["annotations"].pop("lbipam.cilium.io/ips")
    files = edit_docs(base_files, "platform/values.yaml",
                      lambda d: d[0]["traefik"]["values"]["service"]["annotations"].pop("lbipam.cilium.io/ips"))
    files = svc_edit(files, unpin)
    plan = plan_of(files, tmp_path)
    assert plan.services[APISERVER].ips == ("10.31.0.80",)  # kube-system sorts before traefik
    assert plan.services[TRAEFIK].ips == ("10.31.0.81",)
    assert "first free address" in plan.services[APISERVER].ip_reason


def test_allow_first_last_no_reserves_network_and_broadcast(base_files, tmp_path):
    files = bgp_edit(base_files, lambda d: find(d, "CiliumLoadBalancerIPPool")["spec"].update(allowFirstLastIPs="No"))
    files = svc_edit(files, lambda s: s["metadata"]["annotations"].pop("lbipam.cilium.io/ips"))
    plan = plan_of(files, tmp_path)
    assert plan.services[APISERVER].ips == ("10.31.0.82",)  # .80 reserved, .81 pinned by Traefik first
    pinned = svc_edit(files, lambda s: s["metadata"]["annotations"].update({"lbipam.cilium.io/ips": "10.31.0.95"}))
    assert plan_of(pinned, tmp_path / "p").services[APISERVER].ips == ()


def test_pinned_services_win_over_first_free(base_files, tmp_path):
    # Traefik pins .80 (the first address); the apiserver Service, unpinned, must get .81.
    files = edit_docs(base_files, "platform/values.yaml", lambda d: d[0]["traefik"]["values"]["service"]["annotations"]
                      .update({"lbipam.cilium.io/ips": "10.31.0.80"}))
    files = svc_edit(files, lambda s: s["metadata"]["annotations"].pop("lbipam.cilium.io/ips"))
    plan = plan_of(files, tmp_path)
    assert plan.services[TRAEFIK].ips == ("10.31.0.80",)
    assert plan.services[APISERVER].ips == ("10.31.0.81",)


def test_start_stop_block(base_files, tmp_path):
    def block(docs):
        find(docs, "CiliumLoadBalancerIPPool")["spec"]["blocks"] = [{"start": "10.31.0.90", "stop": "10.31.0.91"}]
    files = svc_edit(bgp_edit(base_files, block), lambda s: s["metadata"]["annotations"].pop("lbipam.cilium.io/ips"))
    plan = plan_of(files, tmp_path)
    assert plan.services[APISERVER].ips == ("10.31.0.90",)
    assert plan.services[TRAEFIK].ips == ()  # pinned .81 is outside the range


def test_same_pinned_ip_twice_second_loses(base_files, tmp_path):
    files = edit_docs(base_files, "platform/values.yaml", lambda d: d[0]["traefik"]["values"]["service"]["annotations"]
                      .update({"lbipam.cilium.io/ips": "10.31.0.80"}))
    plan = plan_of(files, tmp_path)
    assert plan.services[APISERVER].ips == ("10.31.0.80",)
    assert plan.services[TRAEFIK].ips == () and "already allocated" in plan.services[TRAEFIK].ip_reason


# ----------------------------------------------------------------- advertisement chain

def test_service_without_name_label_gets_ip_but_is_not_advertised(base_files, tmp_path):
    files = svc_edit(base_files, lambda s: s["metadata"]["labels"].pop("app.kubernetes.io/name"))
    plan = plan_of(files, tmp_path)
    exp = plan.services[APISERVER]
    assert exp.ips == ("10.31.0.80",)
    assert plan.expected_next_hops["10.31.0.80"] == set()
    assert plan.expected_next_hops["10.31.0.81"] == ALL_NODES
    for verdict in exp.nodes.values():
        assert not verdict.advertised
        assert any("do not match CiliumBGPAdvertisement lb-services service selector app.kubernetes.io/name exists"
                   in w for w in verdict.why_not)
    assert all(n.gobgp[0].routes == ("10.31.0.81/32",) for n in plan.nodes.values())


def test_traefik_service_labels_replaced_is_still_advertised_via_chart_labels(base_files, tmp_path):
    files = edit_docs(base_files, "platform/values.yaml",
                      lambda d: d[0]["traefik"]["values"]["service"].update(labels={"team": "web"}))
    plan = plan_of(files, tmp_path)
    assert plan.services[TRAEFIK].labels["team"] == "web"
    assert plan.expected_next_hops["10.31.0.81"] == ALL_NODES


def test_peer_config_selector_matching_no_advertisement(base_files, tmp_path):
    def relabel(docs):
        find(docs, "CiliumBGPAdvertisement")["metadata"]["labels"] = {"advertise": "other"}
    plan = plan_of(bgp_edit(base_files, relabel), tmp_path)
    assert plan.expected_next_hops == {"10.31.0.80": set(), "10.31.0.81": set()}
    why = " ".join(plan.services[TRAEFIK].nodes["cat01"].why_not)
    assert "advertisements selector advertise=bgp matches no CiliumBGPAdvertisement" in why
    assert "lb-services {advertise: other}" in why
    conf = tomllib.loads(plan.nodes["cat01"].gobgp[0].toml)
    assert conf["global"]["apply-policy"]["config"]["export-policy-list"] == []
    assert plan.nodes["cat01"].route_commands() == []


def test_advertisement_without_selector_advertises_nothing(base_files, tmp_path):
    def drop(docs):
        find(docs, "CiliumBGPAdvertisement")["spec"]["advertisements"][0].pop("selector")
    plan = plan_of(bgp_edit(base_files, drop), tmp_path)
    assert plan.expected_next_hops["10.31.0.80"] == set()
    assert "has no selector" in " ".join(plan.services[APISERVER].nodes["cat02"].why_not)


def _etp_local_without_cat03(ccec: bool):
    def local(docs):
        find(docs, "Service")["spec"]["externalTrafficPolicy"] = "Local"
        find(docs, "EndpointSlice")["endpoints"] = [e for e in find(docs, "EndpointSlice")["endpoints"]
                                                    if e["nodeName"] != "cat03"]
        if not ccec:
            docs[:] = [d for d in docs if d["kind"] != "CiliumClusterwideEnvoyConfig"]
    return local


def test_etp_local_without_a_proxy_is_advertised_only_where_an_endpoint_is(base_files, tmp_path):
    plan = plan_of(edit_docs(base_files, "cilium/kube-apiserver-bgp.yaml", _etp_local_without_cat03(False)), tmp_path)
    assert plan.expected_next_hops["10.31.0.80"] == {"10.31.0.218", "10.31.0.161"}
    assert "no endpoint on node cat03" in " ".join(plan.services[APISERVER].nodes["cat03"].why_not)


def test_etp_local_bound_by_the_ccec_is_advertised_everywhere_and_blackholes(base_files, tmp_path):
    """The seed's headline case, as Cilium 1.19.3 decides it (differential corpus: etp-local-ccec): the Envoy
    redirect counts as a local backend, so cat03 keeps advertising, while its Envoy gets no endpoint."""
    plan = plan_of(edit_docs(base_files, "cilium/kube-apiserver-bgp.yaml", _etp_local_without_cat03(True)), tmp_path)
    assert plan.expected_next_hops["10.31.0.80"] == {"10.31.0.218", "10.31.0.161", "10.31.0.132"}
    (fe,) = [f for f in plan.nodes["cat03"].frontends if f.vip == "10.31.0.80"]
    assert fe.backends == []


def test_explain_lines_name_ip_and_each_node(base_files, tmp_path):
    lines = plan_of(base_files, tmp_path).explain()
    assert "Service kube-system/kube-apiserver-bgp [LoadBalancer] IP 10.31.0.80" in lines
    assert "  cat02: advertised to ucg-fiber" in lines


def test_invalid_advertisement_selector_is_a_reason_not_a_crash(base_files, tmp_path):
    def bad(docs):
        find(docs, "CiliumBGPAdvertisement")["spec"]["advertisements"][0]["selector"] = {
            "matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "Exists", "values": ["x"]}]}
    plan = plan_of(bgp_edit(base_files, bad), tmp_path)
    assert plan.expected_next_hops["10.31.0.80"] == set()
    assert "invalid" in " ".join(plan.services[APISERVER].nodes["cat01"].why_not)
