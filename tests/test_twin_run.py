"""twinrun.py, the in-container process control, run on the host with its directories in tmp_path."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

TWINRUN = Path(__file__).resolve().parent.parent / "generators" / "in_container" / "twinrun.py"


def twinrun(tmp_path, *args):
    env = dict(os.environ, TWIN_RUN_DIR=str(tmp_path / "run"), TWIN_LOG_DIR=str(tmp_path / "log"))
    return subprocess.run([sys.executable, str(TWINRUN), *args], capture_output=True, text=True, env=env, timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_start_fails_with_the_log_when_the_process_dies(tmp_path):
    result = twinrun(tmp_path, "start", "boom", "--ready-tcp", f"127.0.0.1:{free_port()}", "--timeout", "20", "--",
                     "sh", "-c", "echo broken config line 3; exit 3")
    assert result.returncode == 1
    assert "exited before" in result.stderr and "broken config line 3" in result.stderr


def test_start_ready_stop_status(tmp_path):
    port = free_port()
    server = ["python3", "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    first = twinrun(tmp_path, "start", "web", "--ready-tcp", f"127.0.0.1:{port}", "--", *server)
    assert first.returncode == 0, first.stderr
    second = twinrun(tmp_path, "start", "web", "--ready-tcp", f"127.0.0.1:{port}", "--", *server)
    assert second.returncode == 0 and "already running" in second.stdout
    assert twinrun(tmp_path, "status", "web").returncode == 0
    assert twinrun(tmp_path, "kill", "web").returncode == 0
    assert twinrun(tmp_path, "status", "web").returncode == 3
    assert twinrun(tmp_path, "stop", "web").returncode == 0  # idempotent
    assert (tmp_path / "log" / "web.log").exists()


def test_sysctl_is_best_effort(tmp_path):
    result = twinrun(tmp_path, "sysctl", "net.ipv4.conf.all.no_such_key=1")
    assert result.returncode == 0 and "cannot set net.ipv4.conf.all.no_such_key=1" in result.stderr
