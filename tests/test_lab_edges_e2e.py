"""The lab's edges on a real host: each probe is a command (or a sequence), the exit code, the message it
must print, and the host afterwards compared with the host before (containers, bridges, iptables rules,
Docker networks, lab records, files). Probes run on labs and directories this test makes itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TOPOLOGY

pytestmark = pytest.mark.e2e

NAME, BRIDGE = "edge-lab", "sw-edge"
STATE_ROOT = Path(os.environ.get("K3S_BGP_LAB_STATE") or "/var/lib/k3s-bgp-lab")


def host() -> dict:
    """What a lab can leave on this machine."""

    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    return {
        "containers": sorted(out("docker", "ps", "-a", "--format", "{{.Names}}").split()),
        "networks": sorted(out("docker", "network", "ls", "--format", "{{.Name}}").split()),
        "bridges": sorted(link["ifname"] for link in json.loads(out("ip", "-j", "link", "show", "type", "bridge"))),
        "iptables": sorted(out("iptables", "-S").splitlines()),
        "records": sorted(p.name for p in (STATE_ROOT / "labs").glob("*.json")),
    }


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def cli(*argv: str, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "generators", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def expect(res: subprocess.CompletedProcess, code: int, *messages: str) -> None:
    text = res.stdout + res.stderr
    assert res.returncode == code, f"exit {res.returncode}, wanted {code}:\n{text}"
    for message in messages:
        assert message in text, f"{message!r} not in:\n{text}"
    assert "Traceback" not in text, text


@pytest.fixture()
def place(tmp_path):
    """An inventory for the edge lab, three checkouts (working directories), and the host state before."""
    inv = tmp_path / "edge.yml"
    inv.write_text(f"include: {TOPOLOGY / 'lab-ci.yml'}\nlab:\n  name: {NAME}\n  bridge: {BRIDGE}\n")
    checkouts = [tmp_path / c for c in ("a", "b", "c")]
    for c in checkouts:
        c.mkdir()
    before = host()
    yield inv, checkouts, before
    for c in checkouts:  # whatever a failed probe left behind
        cli("lab-down", "--name", NAME, cwd=c)


def shim(tmp_path: Path, name: str, script: str) -> dict:
    """PATH with a stand-in for one tool (a failing `ip link add`, a failing debootstrap)."""
    bindir = tmp_path / "shims"
    bindir.mkdir(exist_ok=True)
    path = bindir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}


def test_lab_down_works_with_build_deleted_and_from_another_checkout(place):
    inv, (a, b, _), before = place
    expect(cli("lab-up", "--inventory", str(inv), cwd=a), 0, f"lab {NAME} is up")
    shutil.rmtree(a / "build")
    expect(cli("lab-down", "--name", NAME, cwd=b), 0, f"lab {NAME} is down", f"deleted bridge {BRIDGE}")
    assert host() == before and files(b) == []


def test_a_second_checkout_is_refused_then_can_take_over(place):
    inv, (a, b, _), before = place
    expect(cli("lab-up", "--inventory", str(inv), cwd=a), 0)
    during = host()
    res = cli("lab-up", "--inventory", str(inv), cwd=b)
    expect(
        res,
        2,
        f"lab '{NAME}' already exists and belongs to {a / 'build' / 'lab' / NAME}",
        "--take-over",
        f"invoke lab-down --name {NAME}",
    )
    assert host() == during and files(b) == []  # nothing touched: the first lab runs on
    expect(cli("lab-up", "--inventory", str(inv), "--take-over", cwd=b), 0, f"lab {NAME} is up")
    expect(cli("lab-down", "--name", NAME, cwd=b), 0)
    assert host() == before and files(a / "build" / "lab") == [] and files(b / "build" / "lab") == []


def test_a_deploy_that_fails_before_any_container_leaves_nothing(place, tmp_path):
    inv, (a, _, _), before = place
    env = shim(tmp_path, "containerlab", 'echo "deploy refused by the test" >&2; exit 1\n')
    expect(
        cli("lab-up", "--inventory", str(inv), cwd=a, env=env),
        1,
        "containerlab deploy failed",
        "deploy refused by the test",
        f"`invoke lab-down --name {NAME}` removes it",
    )
    expect(cli("lab-down", "--name", NAME, cwd=a), 0)
    assert host() == before


def test_a_bridge_that_cannot_be_created_is_an_environment_problem(place, tmp_path):
    inv, (a, _, _), before = place
    real = shutil.which("ip")
    env = shim(
        tmp_path,
        "ip",
        'if [ "$1" = link ] && [ "$2" = add ]; then\n'
        '  echo "RTNETLINK answers: Operation not permitted" >&2; exit 2\nfi\n'
        f'exec {real} "$@"\n',
    )
    expect(
        cli("lab-up", "--inventory", str(inv), cwd=a, env=env),
        3,
        "environment problem:",
        f"creating bridge {BRIDGE} failed",
        "Operation not permitted",
    )
    expect(cli("lab-down", "--name", NAME, cwd=a), 0)
    assert host() == before


def test_an_image_build_that_fails_is_an_environment_problem(place, tmp_path):
    inv, (a, _, _), before = place
    old = tmp_path / "frr81.yml"  # a gateway on FRR 8.1: an image (Debian bullseye) this machine has not built
    old.write_text(f"include: {inv}\ngateway:\n  frr_version: \"8.1\"\n")
    env = {
        **shim(tmp_path, "debootstrap", 'echo "E: Failed getting release file (the test)" >&2; exit 1\n'),
        "K3S_BGP_LAB_CACHE": str(tmp_path / "cache"),
    }
    shutil.copytree(
        Path(os.environ.get("K3S_BGP_LAB_CACHE") or Path.home() / ".cache" / "k3s-bgp-lab") / "bin",
        tmp_path / "cache" / "bin",
    )  # GoBGP is built; only the image build is to fail
    for argv in (["images-build", "--inventory", str(old)], ["lab-up", "--inventory", str(old)]):
        expect(
            cli(*argv, cwd=a, env=env),
            3,
            "environment problem:",
            "debootstrap bullseye for image gateway failed",
            "Failed getting release file (the test)",
        )
    expect(cli("lab-down", "--name", NAME, cwd=a), 0)
    assert host() == before


def test_running_lab_probes(place):
    """drill --node that does not exist, keys' modes, status with a node container deleted."""
    inv, (a, _, _), before = place
    expect(cli("lab-up", "--inventory", str(inv), cwd=a), 0)
    expect(
        cli("drill", "--inventory", str(inv), "--scenario", "node-power-loss", "--node", "cat99", cwd=a),
        2,
        "--node 'cat99' is not a node of lab edge-lab (nodes: cat01, cat02, cat03)",
    )

    loose = [
        f"{p} {stat.filemode(p.stat().st_mode)}"
        for p in (a / "build").rglob("*")
        if p.is_file()
        and (p.suffix == ".key" or "token" in p.name or b"PRIVATE KEY" in p.read_bytes()[:4096])
        and (p.stat().st_mode & 0o077 or p.parent.stat().st_mode & 0o077)
    ]
    assert loose == []
    for node in ("ucg", "cat01", "cat02", "cat03", "client"):
        found = subprocess.run(
            [
                "docker",
                "exec",
                f"clab-{NAME}-{node}",
                "sh",
                "-c",
                "find / -xdev \\( -name '*.key' -o -name '*token*' \\) -type f "
                "-not -path '/usr/*' -not -path '/proc/*' -not -path '/sys/*' "
                "-exec stat -c '%a %n' {} \\; -exec sh -c 'stat -c \"%a %n\" $(dirname {})' \\;",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        assert [line for line in found if line and line.split()[0] not in ("600", "700")] == [], node

    subprocess.run(["docker", "rm", "-f", f"clab-{NAME}-cat02"], check=True, capture_output=True)
    expect(cli("status", "--inventory", str(inv), cwd=a), 1, "cat02", "MISSING")
    expect(cli("lab-down", "--name", NAME, cwd=a), 0)
    assert host() == before


def test_drill_on_a_lab_that_is_not_up(place):
    inv, (a, _, _), before = place
    expect(
        cli("drill", "--inventory", str(inv), "--scenario", "all", cwd=a),
        1,
        f"lab {NAME} is not running, so there is nothing to drill",
        "invoke lab-up --inventory",
    )
    assert host() == before and files(a) == []


def _lab_up_until(inv: Path, cwd: Path, phase: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "generators", "lab-up", "--inventory", str(inv)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 300
    for line in proc.stdout:  # the progress lines lab-up prints as it goes
        if line.startswith(f"[{phase}] ..."):
            return proc
        assert time.monotonic() < deadline, f"lab-up never reached {phase}"
    raise AssertionError(f"lab-up ended before {phase}: {proc.wait()} {proc.stderr.read() if proc.stderr else ''}")


@pytest.mark.parametrize("phase", ["deploy", "configure", "converge"])
def test_ctrl_c_during_lab_up_says_what_is_left_and_lab_down_removes_it(place, phase):
    inv, (a, _, _), before = place
    proc = _lab_up_until(inv, a, phase)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    out, err = proc.communicate(timeout=120)
    res = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    expect(res, 130, f"interrupted during {phase}", "left on the host", f"run: invoke lab-down --name {NAME}")
    expect(cli("lab-down", "--name", NAME, cwd=a), 0)
    assert host() == before and files(a / "build" / "lab") == []


def test_sigkill_during_lab_up_then_lab_down_leaves_nothing(place):
    inv, (a, _, _), before = place
    proc = _lab_up_until(inv, a, "configure")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    expect(cli("lab-down", "--name", NAME, cwd=a), 0, f"deleted bridge {BRIDGE}")
    assert host() == before and files(a / "build" / "lab") == []
