"""Build (or find) the lab images and run each one's tool in a real container.

Needs Docker (started by ensure_prereqs when it is not running), debootstrap and Go.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

import pytest

from generators.lab.engine import Engine, ExecTimeout
from generators.lab.images import ensure_images
from generators.lab.kinds import specs_for
from generators.lab.prereqs import ensure_prereqs

pytestmark = pytest.mark.e2e

SEED_FRR_CONF = Path(__file__).parent / "fixtures" / "seed" / "frr.conf"
DAEMONS = """\
bgpd=yes
ospfd=no
ospf6d=no
ripd=no
ripngd=no
isisd=no
pimd=no
ldpd=no
nhrpd=no
eigrpd=no
babeld=no
sharpd=no
pbrd=no
bfdd=no
fabricd=no
vrrpd=no
pathd=no
vtysh_enable=yes
zebra_options="  -A 127.0.0.1 -s 90000000"
bgpd_options="   -A 127.0.0.1"
staticd_options="-A 127.0.0.1"
"""
# --privileged fails here (the host's capability bounding set lacks CAP_SYS_RESOURCE); FRR's
# daemons need these three.
FRR_CAPS = ("NET_ADMIN", "NET_RAW", "SYS_ADMIN")
RUN_LABEL = "k3s-bgp-lab.test"


@pytest.fixture(scope="module")
def engine() -> Engine:
    ensure_prereqs({"docker", "images"})
    return Engine()


@pytest.fixture(scope="module")
def tags(engine: Engine) -> dict[str, str]:
    return ensure_images(specs_for("8.4.4"), engine)


@pytest.fixture()
def run_id(engine: Engine) -> Iterator[str]:
    rid = f"images-e2e-{os.getpid()}-{time.monotonic_ns()}"
    yield rid
    for c in engine.containers({RUN_LABEL: rid}):
        engine.remove(c.id)
    assert engine.containers({RUN_LABEL: rid}) == []


def start(engine: Engine, tag: str, role: str, rid: str, **kw) -> str:
    name = f"{rid}-{role}"
    engine.run_idle(tag, name, labels={RUN_LABEL: rid, "role": role}, **kw)
    assert engine.inspect(name)["State"]["Running"] is True
    return name


def test_images_are_tagged_by_content_and_found_again(engine: Engine, tags: dict[str, str]) -> None:
    assert set(tags) == {"gateway", "twin", "client"}
    for name, tag in tags.items():
        assert tag.startswith(f"k3s-bgp-lab/{name}:") and engine.image_exists(tag)
    lines: list[str] = []
    assert ensure_images(specs_for("8.4.4"), engine, lines.append) == tags
    assert [ln for ln in lines if ln.startswith("image ")] == [
        f"image {n}: present ({t})" for n, t in tags.items()]


def test_gateway_runs_frr_with_a_bind_mounted_config(engine: Engine, tags: dict[str, str],
                                                      run_id: str, tmp_path: Path) -> None:
    conf_dir = tmp_path / "frr"
    conf_dir.mkdir()
    (conf_dir / "frr.conf").write_bytes(SEED_FRR_CONF.read_bytes())
    (conf_dir / "daemons").write_text(DAEMONS)
    volumes = {str(conf_dir / f): {"bind": f"/etc/frr/{f}", "mode": "ro"}
               for f in ("frr.conf", "daemons")}
    gw = start(engine, tags["gateway"], "gateway", run_id, volumes=volumes, cap_add=FRR_CAPS)
    started = engine.exec(gw, ["/usr/lib/frr/frrinit.sh", "start"], timeout=60)
    assert started.ok, started.stdout + started.stderr
    version = engine.exec(gw, ["vtysh", "-c", "show version"])
    assert version.ok and "FRRouting 8.4.4" in version.stdout
    running = engine.exec(gw, ["vtysh", "-c", "show running-config"])
    assert "router bgp 64512" in running.stdout  # the bind-mounted frr.conf was loaded


def test_twin_has_gobgp_3_37(engine: Engine, tags: dict[str, str], run_id: str) -> None:
    twin = start(engine, tags["twin"], "twin", run_id)
    for cmd in ("gobgpd", "gobgp"):
        r = engine.exec(twin, [cmd, "--version"])
        assert r.ok and "version 3.37.0" in r.stdout, r
    assert engine.exec(twin, ["haproxy", "-v"]).stdout.startswith("HAProxy version 2.6")


def test_client_has_curl_and_engine_basics(engine: Engine, tags: dict[str, str], run_id: str) -> None:
    client = start(engine, tags["client"], "client", run_id)
    r = engine.exec(client, ["curl", "--version"])
    assert r.ok and r.stdout.startswith("curl ")
    # put_files creates parent folders and sets the mode
    engine.put_files(client, {"/opt/lab/ca/ca.pem": b"PEM\n"}, mode=0o600)
    r = engine.exec(client, ["stat", "-c", "%a %s", "/opt/lab/ca/ca.pem"])
    assert r.stdout.strip() == "600 4"
    # exit codes and stderr come back separately
    r = engine.exec(client, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.exit_code, r.stdout, r.stderr) == (3, "out\n", "err\n")
    # a command that overruns its timeout is killed
    t0 = time.monotonic()
    with pytest.raises(ExecTimeout):
        engine.exec(client, ["sleep", "30"], timeout=1)
    assert time.monotonic() - t0 < 10
    ps = engine.exec(client, ["sh", "-c", "cat /proc/[0-9]*/comm"]).stdout.split()
    assert "sleep" in ps and ps.count("sleep") == 1  # only the idle command is left
    found = engine.containers({RUN_LABEL: run_id, "role": "client"})
    assert [c.name for c in found] == [client] and found[0].state == "running"
