"""One twin node brought up by its own start_commands in a lone twin-image container (``--network none``).

No lab network: the node's address and the VIPs exist only on the container's loopback, every probe
runs inside the container (docker exec). Checks GoBGP's RIB, the HAProxy -> stand-in apiserver path with
TLS verified against the lab CA by the VIP, the Traefik stand-in, idempotent re-runs and a kill/restart.
"""
from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest
from test_twin_support import rendered_files, write_rendered

from generators.twin import plan_twin

pytestmark = pytest.mark.e2e

PROBE_TLS = ("import ssl,sys,urllib.request as u;"
             "c=ssl.create_default_context(cafile='/etc/twin/pki/ca.crt');"
             "r=u.urlopen(sys.argv[1],context=c,timeout=5);print(r.status,r.headers['X-Served-By'],r.read().decode())")
HAPROXY_STATES = ("import socket;s=socket.socket(socket.AF_UNIX);s.connect('/run/twin/haproxy.sock');"
                  "s.sendall(b'show stat\\n');d=b''\n"
                  "while (c:=s.recv(65536)):d+=c\n"
                  "rows=[l.split(',') for l in d.decode().splitlines() if l and not l.startswith('#')]\n"
                  "print(' '.join(f'{r[1]}={r[17]}' for r in rows if r[1] not in ('FRONTEND','BACKEND')))")
PROBE_HTTP = "import sys,urllib.request as u;print(u.urlopen(sys.argv[1],timeout=5).read().decode())"


def twin_image() -> str:
    from conftest import lab_image
    from generators.lab.kinds.twin import twin_spec

    return lab_image(twin_spec())


def dexec(name: str, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", "exec", name] + argv, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}): {result.stdout}{result.stderr}")
    return result


@pytest.fixture
def node_container(tmp_path):
    image = twin_image()
    plan = plan_twin(write_rendered(rendered_files(), tmp_path / "r"), k3s_version="v1.35.1+k3s1")
    node = plan.nodes["cat01"]
    name = f"twin-node-test-{uuid.uuid4().hex[:8]}"
    try:
        subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", "--cap-add", "NET_ADMIN", image,
                        "sleep", "infinity"], check=True, capture_output=True, timeout=120)
        stage = tmp_path / "stage"
        for path, data in node.files(tmp_path / "pki").items():
            target = stage / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        subprocess.run(["docker", "cp", f"{stage}/.", f"{name}:/"], check=True, capture_output=True, timeout=120)
        dexec(name, ["ip", "addr", "add", f"{node.ip}/32", "dev", "lo"])  # eth1's address in the real lab
        yield name, node
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=120)


def wait_for_states(name: str, wanted: str, timeout_s: float) -> float:
    start = time.monotonic()
    seen = ""
    while time.monotonic() - start < timeout_s:
        seen = dexec(name, ["python3", "-c", HAPROXY_STATES]).stdout.strip()
        if seen == wanted:
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"HAProxy server states {seen!r}, wanted {wanted!r} within {timeout_s} s")


def test_node_comes_up_and_serves(node_container):
    name, node = node_container
    for argv in node.start_commands():
        dexec(name, argv)
    rib = json.loads(dexec(name, ["gobgp", "global", "rib", "-a", "ipv4", "-j"]).stdout)
    assert sorted(rib) == ["10.31.0.80/32", "10.31.0.81/32"]
    # cat02/cat03 do not exist here: HAProxy must mark them DOWN after fall=3 checks at inter=1s
    wait_for_states(name, "cat01=UP cat02=DOWN cat03=DOWN", timeout_s=15)
    out = dexec(name, ["python3", "-c", PROBE_TLS, "https://10.31.0.80:6443/healthz"]).stdout.split()
    assert out == ["200", "cat01", "ok"]  # via HAProxy, verified for the VIP as IP SAN
    out = dexec(name, ["python3", "-c", PROBE_TLS, "https://10.31.0.218:6443/version"]).stdout
    assert '"gitVersion": "v1.35.1+k3s1"' in out
    assert dexec(name, ["python3", "-c", PROBE_HTTP, "http://10.31.0.81/"]).stdout.strip() == "served-by: cat01"
    # idempotent: a second run starts nothing new
    for argv in node.start_commands():
        dexec(name, argv)
    assert "already running" in dexec(name, node.start_commands()[-1]).stdout


def test_killed_processes_restart(node_container):
    name, node = node_container
    for argv in node.start_commands():
        dexec(name, argv)
    dexec(name, ["python3", "/opt/twin/twinrun.py", "kill", "apiserver"])
    assert dexec(name, ["python3", "/opt/twin/twinrun.py", "status", "apiserver"], check=False).returncode == 3
    for argv in node.restart_commands("apiserver"):
        dexec(name, argv)
    assert dexec(name, ["python3", "-c", PROBE_TLS, "https://10.31.0.218:6443/healthz"]).stdout.split()[0] == "200"
    dexec(name, ["python3", "/opt/twin/twinrun.py", "kill", "gobgpd-k3s-bgp"])
    for argv in node.restart_commands("gobgpd-k3s-bgp"):
        dexec(name, argv)
    rib = json.loads(dexec(name, ["gobgp", "global", "rib", "-a", "ipv4", "-j"]).stdout)
    assert sorted(rib) == ["10.31.0.80/32", "10.31.0.81/32"]


def test_haproxy_in_the_image_accepts_every_variant(tmp_path):
    """``haproxy -c`` (Debian bookworm's 2.6, in the twin image) on the rack's config and on the variants
    where the CCEC cluster is dropped (no servers) or eTP Local leaves one backend."""
    from test_twin_support import edit_docs, find

    image = twin_image()
    base = rendered_files()

    def drop_cluster(docs):
        resources = find(docs, "CiliumClusterwideEnvoyConfig")["spec"]["resources"]
        next(r for r in resources if r["@type"].endswith("Cluster"))["connect_timeout"] = "5000ms"

    def local(docs):
        find(docs, "Service")["spec"]["externalTrafficPolicy"] = "Local"

    variants = {"rack": base, "dropped": edit_docs(base, "cilium/kube-apiserver-bgp.yaml", drop_cluster),
                "local": edit_docs(base, "cilium/kube-apiserver-bgp.yaml", local)}
    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    for label, files in variants.items():
        for name, node in plan_twin(write_rendered(files, tmp_path / label)).nodes.items():
            (cfg_dir / f"{label}-{name}.cfg").write_text(node.haproxy_cfg.replace("/run/twin/", "/tmp/"))
    for cfg in sorted(cfg_dir.iterdir()):
        result = subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{cfg_dir}:/cfg:ro", image,
                                 "haproxy", "-c", "-f", f"/cfg/{cfg.name}"], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, f"{cfg.name}: {result.stdout}{result.stderr}"
