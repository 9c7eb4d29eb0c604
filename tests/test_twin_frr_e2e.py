"""One twin node against the gateway's FRR (rendered frr.conf), two containers on a private internal Docker
network: the session comes up, FRR gets the VIPs with origin IGP and next-hop = node, and sees graceful
restart as Cilium negotiates it (R-bit from local-restarting, N-bit, restart time). All probes run with
docker exec inside the containers."""
from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest
from test_twin_support import rendered_files, write_rendered

from generators.twin import plan_twin

pytestmark = pytest.mark.e2e


def image(spec_fn, *args) -> str:
    from conftest import lab_image
    from generators.lab import kinds

    return lab_image(getattr(kinds, spec_fn)(*args))


def run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}): {result.stdout}{result.stderr}")
    return result


def test_twin_node_peers_with_frr_like_cilium(tmp_path):
    gw_image, twin_image = image("gateway_spec", "8.4.4"), image("twin_spec")
    rendered = write_rendered(rendered_files(), tmp_path / "r")
    node = plan_twin(rendered).nodes["cat01"]
    tag = uuid.uuid4().hex[:8]
    net, gw, tw = f"twin-frr-{tag}", f"twin-frr-gw-{tag}", f"twin-frr-cat01-{tag}"
    run(["docker", "network", "create", "--internal", "--subnet", "10.31.0.0/24", "--gateway", "10.31.0.254", net])
    try:
        run(["docker", "run", "-d", "--name", gw, "--network", net, "--ip", "10.31.0.1", "--cap-add", "NET_ADMIN",
             "--cap-add", "SYS_ADMIN", "-v", f"{rendered}/frr/frr.conf:/etc/frr/frr.conf:ro",
             "-v", f"{rendered}/frr/daemons:/etc/frr/daemons:ro", gw_image, "sleep", "infinity"])
        run(["docker", "run", "-d", "--name", tw, "--network", net, "--ip", node.ip, "--cap-add", "NET_ADMIN",
             twin_image, "sleep", "infinity"])
        stage = tmp_path / "stage"
        for path, data in node.files(tmp_path / "pki").items():
            target = stage / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        run(["docker", "cp", f"{stage}/.", f"{tw}:/"])
        run(["docker", "exec", gw, "/usr/lib/frr/frrinit.sh", "start"])
        for argv in node.start_commands():
            run(["docker", "exec", tw] + argv)
        deadline = time.monotonic() + 60
        paths: list = []
        while time.monotonic() < deadline:
            out = run(["docker", "exec", gw, "vtysh", "-c", "show ip bgp 10.31.0.81/32 json"]).stdout
            paths = json.loads(out or "{}").get("paths", [])
            if paths:
                break
            time.sleep(0.2)
        assert paths, "FRR did not receive 10.31.0.81/32 from the twin node within 60 s"
        assert paths[0]["origin"] == "IGP"
        assert [h["ip"] for h in paths[0]["nexthops"]] == [node.ip]
        neighbors = json.loads(run(["docker", "exec", gw, "vtysh", "-c", f"show bgp neighbors {node.ip} json"]).stdout)
        info = neighbors[node.ip]
        assert info["bgpState"] == "Established"
        assert info["bgpTimerHoldTimeMsecs"] == 15000
        gr = info["gracefulRestartInfo"]
        assert (gr["rBit"], gr["nBit"], gr["timers"]["receivedRestartTimer"]) == (True, True, 120)
        received = json.loads(run(["docker", "exec", gw, "vtysh", "-c",
                                   f"show bgp ipv4 unicast neighbors {node.ip} routes json"]).stdout)
        assert sorted(received["routes"]) == ["10.31.0.80/32", "10.31.0.81/32"]
    finally:
        for container in (gw, tw):
            run(["docker", "rm", "-f", container], check=False)
        run(["docker", "network", "rm", net], check=False)
