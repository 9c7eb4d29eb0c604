"""twinrun.py, the in-container process control, run on the host with its directories in tmp_path."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from generators.errors import LabError
from generators.lab.engine import ExecResult
from generators.lab.kinds.twin import TWINRUN as IN_CONTAINER
from generators.lab.kinds.twin import _run_all

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


def test_batch_runs_in_order_reports_each_and_stops_at_the_first_failure(tmp_path):
    marker = tmp_path / "ran"
    cmds = [["sh", "-c", "echo one"], ["sh", "-c", "echo bad >&2; exit 4"], ["touch", str(marker)]]
    result = twinrun(tmp_path, "batch", json.dumps(cmds))
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 4
    assert [r["rc"] for r in records] == [0, 4] and records[0]["stdout"] == "one\n" and records[1]["stderr"] == "bad\n"
    assert not marker.exists()  # nothing after the failure ran
    missing = twinrun(tmp_path, "batch", json.dumps([["/nonexistent/tool"]]))
    assert missing.returncode == 127 and "nonexistent" in json.loads(missing.stdout)["stderr"]


def test_batch_start_returns_while_the_started_process_keeps_running(tmp_path):
    """A process started from a batch holds none of the batch's pipes: the batch (one docker exec) returns."""
    port = free_port()
    start = ["python3", str(TWINRUN), "start", "web", "--ready-tcp", f"127.0.0.1:{port}", "--",
             "python3", "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    result = twinrun(tmp_path, "batch", json.dumps([start]))
    try:
        assert result.returncode == 0, result.stdout
        assert "started web" in json.loads(result.stdout)["stdout"]
        assert twinrun(tmp_path, "status", "web").returncode == 0
    finally:
        twinrun(tmp_path, "kill", "web")


class LocalNode:
    """A NodeAccess whose exec runs the command on the host, with the in-container path of twinrun.py mapped."""

    def __init__(self, tmp_path):
        self.env = dict(os.environ, TWIN_RUN_DIR=str(tmp_path / "run"), TWIN_LOG_DIR=str(tmp_path / "log"))
        self.calls = 0

    def exec(self, node, argv, timeout=60):
        self.calls += 1
        argv = [str(TWINRUN) if a == IN_CONTAINER else a for a in argv]
        res = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout)
        return ExecResult(res.returncode, res.stdout, res.stderr)


def test_run_all_is_one_exec_and_names_the_command_that_failed(tmp_path):
    access = LocalNode(tmp_path)
    assert _run_all(access, "cat01", [["echo", "a"], ["echo", "started x"]]) == ["a\n", "started x\n"]
    assert access.calls == 1
    with pytest.raises(LabError, match=r"cat01: `sh -c exit 3` failed") as err:
        _run_all(access, "cat01", [["echo", "a"], ["sh", "-c", "exit 3"], ["echo", "never"]])
    assert access.calls == 2 and err.match("exit 3")
