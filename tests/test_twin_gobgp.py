"""The generated GoBGP config against the real GoBGP v3.37.0 binaries, when they are on this machine.

- ``gobgpd -f FILE -d`` reads the file with viper's UnmarshalExact (an unknown key is fatal) and, with
  ``-l debug``, prints the parsed config: the test checks the values GoBGP actually took.
- A live run on 127.0.0.1 only: the peer is rewritten to 127.0.0.2 (nothing listens there; no lab
  address is ever contacted from the host), the routes are injected with the plan's own argv, and the
  RIB must hold them with origin IGP.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_twin_support import edit_docs, find, rendered_files, write_rendered

from generators.twin import plan_twin

CANDIDATES = [Path.home() / ".cache" / "k3s-bgp-lab" / "bin", Path("/tmp/gobin")]
TWINRUN = Path(__file__).resolve().parent.parent / "generators" / "in_container" / "twinrun.py"


def gobgp_bin(name: str) -> Path:
    for d in CANDIDATES:
        if (d / name).is_file() and os.access(d / name, os.X_OK):
            return d / name
    found = shutil.which(name)
    if found:
        return Path(found)
    pytest.skip(
        f"{name} (GoBGP v3.37.0) is not installed in {', '.join(map(str, CANDIDATES))} or on PATH; "
        f"`invoke lab-up` / `invoke test` install it"
    )


def version_ok(gobgpd: Path) -> None:
    out = subprocess.run([str(gobgpd), "--version"], capture_output=True, text=True, timeout=30).stdout
    assert "3.37.0" in out, f"{gobgpd} is not GoBGP 3.37.0: {out!r}"


def test_gobgpd_dry_run_accepts_every_node_config(tmp_path):
    gobgpd = gobgp_bin("gobgpd")
    version_ok(gobgpd)
    plan = plan_twin(write_rendered(rendered_files(), tmp_path / "r"))
    for name, node in plan.nodes.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(node.gobgp[0].toml)
        result = subprocess.run(
            [str(gobgpd), "-f", str(path), "-d", "-p", "-l", "debug"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
        parsed = result.stdout + result.stderr
        assert f'RouterId:         "{node.ip}"' in parsed and "Port:             -1" in parsed
        assert (
            "ConnectRetry:120, HoldTime:15, KeepaliveInterval:5, MinimumAdvertisementInterval:0, "
            "IdleHoldTimeAfterReset:5" in parsed
        )
        assert "GracefulRestartConfig{Enabled:true, RestartTime:0x78" in parsed and "NotificationEnabled:true" in parsed
        assert "MpGracefulRestartConfig{Enabled:true}" in parsed


def test_gobgpd_dry_run_rejects_an_unknown_key(tmp_path):
    """Guards the test above: -d must fail on a wrong field name, or it would prove nothing."""
    gobgpd = gobgp_bin("gobgpd")
    plan = plan_twin(write_rendered(rendered_files(), tmp_path / "r"))
    bad = plan.nodes["cat01"].gobgp[0].toml.replace("idle-hold-time-after-reset", "idle-hold-after-reset")
    (tmp_path / "bad.toml").write_text(bad)
    result = subprocess.run(
        [str(gobgpd), "-f", str(tmp_path / "bad.toml"), "-d", "-p"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "invalid keys: idle-hold-after-reset" in result.stdout + result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_live_gobgpd_takes_the_routes_with_origin_igp(tmp_path):
    gobgpd, gobgp = gobgp_bin("gobgpd"), gobgp_bin("gobgp")
    files = edit_docs(
        rendered_files(),
        "cilium/bgp.yaml",
        lambda d: find(d, "CiliumBGPClusterConfig")["spec"]["bgpInstances"][0]["peers"][0].update(
            peerAddress="127.0.0.2"
        ),
    )
    node = plan_twin(write_rendered(files, tmp_path / "r")).nodes["cat01"]
    inst = dataclasses.replace(node.gobgp[0], config_path=str(tmp_path / "gobgpd.toml"), api_port=_free_port())
    Path(inst.config_path).write_text(inst.toml.replace('router-id = "10.31.0.218"', 'router-id = "127.0.0.1"'))
    env = dict(
        os.environ,
        TWIN_RUN_DIR=str(tmp_path / "run"),
        TWIN_LOG_DIR=str(tmp_path / "log"),
        PATH=f"{gobgpd.parent}:{gobgp.parent}:{os.environ.get('PATH', '')}",
    )
    start = [
        sys.executable,
        str(TWINRUN),
        "start",
        "gobgpd",
        "--ready-tcp",
        f"127.0.0.1:{inst.api_port}",
        "--timeout",
        "30",
        "--",
    ] + inst.daemon_argv()
    try:
        result = subprocess.run(start, capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        again = subprocess.run(start, capture_output=True, text=True, env=env, timeout=60)
        assert again.returncode == 0 and "already running" in again.stdout
        for argv in inst.route_argv():
            r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
            assert r.returncode == 0, r.stdout + r.stderr
        rib = subprocess.run(
            ["gobgp", "-p", str(inst.api_port), "global", "rib", "-a", "ipv4", "-j"],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
        table = json.loads(rib.stdout)
        assert sorted(table) == ["10.31.0.80/32", "10.31.0.81/32"]
        for paths in table.values():
            assert {"type": 1, "value": 0} in paths[0]["attrs"]  # ORIGIN IGP
        peers = json.loads(
            subprocess.run(
                ["gobgp", "-p", str(inst.api_port), "neighbor", "-j"],
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
            ).stdout
        )
        # the same gobgp.GracefulRestart message Cilium builds through the API
        gr = peers[0]["graceful_restart"]
        assert (gr["enabled"], gr["restart_time"], gr["notification_enabled"], gr["local_restarting"]) == (
            True,
            120,
            True,
            True,
        )  # local_restarting from gobgpd -r
        assert peers[0]["afi_safis"][0]["mp_graceful_restart"]["config"]["enabled"]
        assert peers[0]["timers"]["config"]["idle_hold_time_after_reset"] == 5
    finally:
        subprocess.run([sys.executable, str(TWINRUN), "stop", "gobgpd"], env=env, capture_output=True, timeout=60)
    status = subprocess.run(
        [sys.executable, str(TWINRUN), "status", "gobgpd"], env=env, capture_output=True, timeout=30
    )
    assert status.returncode == 3
