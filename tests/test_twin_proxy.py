"""The twin's data path config: protojson Durations, CCEC parsing as Cilium drops resources, eTP Local
filtering of CCEC backends, and the HAProxy numbers taken from the CCEC."""
from __future__ import annotations

import shutil
import subprocess
from decimal import Decimal

import pytest
from test_twin_support import edit_docs, find, rendered_files, write_rendered

from generators.readback.durations import DurationError, parse_proto_duration
from generators.twin import plan_twin

APISERVER = "kube-system/kube-apiserver-bgp"


@pytest.mark.parametrize("text, seconds", [
    ("1s", "1"), ("0.1s", "0.1"), (".5s", "0.5"), ("1.s", "1"), ("-2s", "-2"), ("+3s", "3"), ("3600s", "3600"),
    ("0.000000001s", "0.000000001"), ("0s", "0"),
])
def test_valid_durations(text, seconds):
    assert parse_proto_duration(text) == Decimal(seconds)


@pytest.mark.parametrize("text", ["100ms", "1m", "1h", "01s", "1", "s", "-s", "1e3s", "1.0000000001s", " 1s", "1s ",
                                  "1.5.s", "", 5])
def test_invalid_durations(text):
    with pytest.raises(DurationError, match="invalid google.protobuf.Duration value"):
        parse_proto_duration(text)


def ccec_edit(files, change):
    return edit_docs(files, "cilium/kube-apiserver-bgp.yaml",
                     lambda docs: change(find(docs, "CiliumClusterwideEnvoyConfig")["spec"]["resources"], docs))


def cluster(resources):
    return next(r for r in resources if r["@type"].endswith("Cluster"))


def listener(resources):
    return next(r for r in resources if r["@type"].endswith("Listener"))


def section(cfg: str, name: str = "listen kube-system_kube-apiserver-bgp_10.31.0.80_6443") -> list[str]:
    lines = cfg.splitlines()
    start = lines.index(name)
    out = []
    for line in lines[start + 1:]:
        if not line.startswith("    "):
            break
        out.append(line.strip())
    return out


def test_haproxy_takes_numbers_from_the_ccec(tmp_path):
    plan = plan_twin(write_rendered(rendered_files(), tmp_path))
    cfg = plan.nodes["cat02"].haproxy_cfg
    body = section(cfg)
    assert "bind 10.31.0.80:6443" in body
    assert "timeout client 3600000ms" in body and "timeout server 3600000ms" in body  # idle_timeout 3600s
    assert "timeout connect 5000ms" in body  # connect_timeout 5s
    assert "timeout check 1000ms" in body  # health check timeout 1s
    assert "option tcp-check" in body and "balance roundrobin" in body
    servers = [line for line in body if line.startswith("server ")]
    assert servers == [f"server {n} {ip}:6443 check inter 1000ms fall 3 rise 1 observe layer4 error-limit 3 "
                       f"on-error mark-down" for n, ip in (("cat01", "10.31.0.218"), ("cat02", "10.31.0.161"),
                                                          ("cat03", "10.31.0.132"))]
    assert "    spread-checks 5" in cfg.splitlines()  # 0.1s jitter on a 1s interval


def test_other_numbers_follow(tmp_path):
    def change(resources, _docs):
        hc = cluster(resources)["health_checks"][0]
        hc.update(interval="2.5s", timeout="0.25s", unhealthy_threshold=5, healthy_threshold=2)
        cluster(resources)["connect_timeout"] = "0.75s"
        listener(resources)["filter_chains"][0]["filters"][0]["typed_config"]["idle_timeout"] = "120s"
    plan = plan_twin(write_rendered(ccec_edit(rendered_files(), change), tmp_path))
    body = section(plan.nodes["cat01"].haproxy_cfg)
    assert "timeout connect 750ms" in body and "timeout check 250ms" in body and "timeout client 120000ms" in body
    assert all("check inter 2500ms fall 5 rise 2" in line for line in body if line.startswith("server "))


def test_bad_duration_in_cluster_drops_the_cluster_only(tmp_path):
    def change(resources, _docs):
        cluster(resources)["health_checks"][0]["interval_jitter"] = "100ms"
    plan = plan_twin(write_rendered(ccec_edit(rendered_files(), change), tmp_path))
    assert any('invalid google.protobuf.Duration value "100ms"' in p and "kube-system/kube-apiserver-bgp" in p
               for p in plan.problems)
    for node in plan.nodes.values():
        (fe,) = node.frontends
        assert fe.listener is not None and fe.cluster is None and fe.backends == []
        assert any("accepted and closed" in n for n in fe.notes)
        body = section(node.haproxy_cfg)
        assert "bind 10.31.0.80:6443" in body  # the listener still accepts...
        assert not any(line.startswith("server ") for line in body)  # ...and has nowhere to send


def test_bad_duration_in_listener_drops_the_listener(tmp_path):
    def change(resources, _docs):
        listener(resources)["filter_chains"][0]["filters"][0]["typed_config"]["idle_timeout"] = "1h"
    plan = plan_twin(write_rendered(ccec_edit(rendered_files(), change), tmp_path))
    node = plan.nodes["cat01"]
    assert node.frontends[0].listener is None
    assert "bind 10.31.0.80:6443" not in node.haproxy_cfg
    assert "haproxy" not in node.processes()


def test_etp_local_keeps_only_the_local_backend(tmp_path):
    def local(docs):
        find(docs, "Service")["spec"]["externalTrafficPolicy"] = "Local"
    plan = plan_twin(write_rendered(edit_docs(rendered_files(), "cilium/kube-apiserver-bgp.yaml", local), tmp_path))
    for name, node in plan.nodes.items():
        servers = [line for line in section(node.haproxy_cfg) if line.startswith("server ")]
        assert len(servers) == 1 and servers[0].startswith(f"server {name} ")


def test_etp_local_node_without_endpoint_gets_no_backend(tmp_path):
    def local(docs):
        find(docs, "Service")["spec"]["externalTrafficPolicy"] = "Local"
        slice_ = find(docs, "EndpointSlice")
        slice_["endpoints"] = [e for e in slice_["endpoints"] if e["nodeName"] != "cat03"]
    plan = plan_twin(write_rendered(edit_docs(rendered_files(), "cilium/kube-apiserver-bgp.yaml", local), tmp_path))
    (fe,) = plan.nodes["cat03"].frontends
    assert fe.backends == []
    assert not any(line.startswith("server ") for line in section(plan.nodes["cat03"].haproxy_cfg))
    assert [b.name for b in plan.nodes["cat01"].frontends[0].backends] == ["cat01"]


def test_cluster_not_named_after_the_service_stays_empty(tmp_path):
    def rename(resources, _docs):
        cluster(resources)["name"] = "apiserver"
        listener(resources)["filter_chains"][0]["filters"][0]["typed_config"]["cluster"] = "apiserver"
    plan = plan_twin(write_rendered(ccec_edit(rendered_files(), rename), tmp_path))
    fe = plan.nodes["cat01"].frontends[0]
    assert fe.backends == [] and any("not named after the bound Service" in n for n in fe.notes)


def test_haproxy_accepts_the_config_when_installed(tmp_path):
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("haproxy is not installed on this host (the twin image has it); config not checked by haproxy -c")
    plan = plan_twin(write_rendered(rendered_files(), tmp_path / "r"))
    cfg = plan.nodes["cat01"].haproxy_cfg.replace("stats socket /run/twin/", f"stats socket {tmp_path}/")
    path = tmp_path / "haproxy.cfg"
    path.write_text(cfg)
    result = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
