#!/usr/bin/env python3
"""Start, stop and inspect a twin node's long-running processes (stdlib only; runs inside the container).

  twinrun.py start NAME [--ready-tcp HOST:PORT] [--timeout S] -- ARGV...
      Idempotent: when NAME runs already, nothing happens. Otherwise ARGV is started in its own session,
      stdout/stderr appended to /var/log/twin/NAME.log, pid in /run/twin/NAME.pid. With --ready-tcp it
      returns once HOST:PORT accepts a TCP connection, and fails (printing the log's tail) if the process
      exits first or the deadline passes.
  twinrun.py stop NAME [--timeout S]      SIGTERM, then SIGKILL at the deadline; idempotent.
  twinrun.py kill NAME                    SIGKILL at once (drills: a crash, no clean shutdown).
  twinrun.py status NAME                  exit 0 when running, 3 when not.
  twinrun.py sysctl KEY=VALUE...          best effort: sets each key, warns (exit 0) where /proc/sys is read-only.
  twinrun.py batch JSON                   runs a JSON list of argv lists in order, one JSON line per command
                                          ({"argv", "rc", "stdout", "stderr"}); stops at the first failure and
                                          exits with its code. One docker exec for what a node needs.

The container's PID 1 (``sleep infinity``) does not reap orphans: a dead process can stay a zombie, which
is treated as not running.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

RUN_DIR = Path(os.environ.get("TWIN_RUN_DIR", "/run/twin"))
LOG_DIR = Path(os.environ.get("TWIN_LOG_DIR", "/var/log/twin"))
POLL_S = 0.05


def pid_file(name: str) -> Path:
    return RUN_DIR / f"{name}.pid"


def log_file(name: str) -> Path:
    return LOG_DIR / f"{name}.log"


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def running_pid(name: str) -> int | None:
    try:
        pid = int(pid_file(name).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _tcp_ready(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _spawn(name: str, argv: list[str]) -> int:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = os.open(log_file(name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    pid = os.fork()
    if pid == 0:  # child: own session, no terminal, output to the log
        try:
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.execvp(argv[0], argv)
        except OSError as exc:
            os.write(2, f"twinrun: cannot start {argv[0]}: {exc}\n".encode())
        os._exit(127)
    os.close(log)
    pid_file(name).write_text(f"{pid}\n")
    return pid


def start(name: str, argv: list[str], ready_tcp: str | None, timeout: float) -> int:
    if not argv:
        print(f"twinrun: start {name}: no command given (put it after --)", file=sys.stderr)
        return 2
    pid = running_pid(name)
    if pid is None:
        pid = _spawn(name, argv)
        print(f"started {name} (pid {pid}): {' '.join(argv)}")
    else:
        print(f"{name} already running (pid {pid})")
    if not ready_tcp:
        return 0
    host, _, port = ready_tcp.rpartition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:  # reap our own child if it died, so it is seen as dead
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not alive(pid):
            print(f"twinrun: {name} exited before {ready_tcp} accepted connections; log:\n{tail(log_file(name))}",
                  file=sys.stderr)
            return 1
        if _tcp_ready(host, int(port)):
            return 0
        time.sleep(POLL_S)
    print(f"twinrun: {name} (pid {pid}) did not accept connections on {ready_tcp} within {timeout:.0f} s; log:\n"
          f"{tail(log_file(name))}", file=sys.stderr)
    return 1


def stop(name: str, timeout: float, sig: int = signal.SIGTERM) -> int:
    pid = running_pid(name)
    if pid is None:
        print(f"{name} not running")
        pid_file(name).unlink(missing_ok=True)
        return 0
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    if alive(pid):
        os.killpg(pid, signal.SIGKILL)
    pid_file(name).unlink(missing_ok=True)
    print(f"stopped {name} (pid {pid})")
    return 0


def set_sysctls(pairs: list[str]) -> int:
    for pair in pairs:
        key, _, value = pair.partition("=")
        path = Path("/proc/sys") / key.replace(".", "/")
        try:
            path.write_text(value)
            print(f"{key} = {value}")
        except OSError as exc:
            print(f"twinrun: warning: cannot set {key}={value} ({exc.strerror}); not a privileged container?",
                  file=sys.stderr)
    return 0


def batch(commands: list[list[str]], timeout: float) -> int:
    for argv in commands:
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
            rc, out, err = res.returncode, res.stdout, res.stderr
        except (OSError, subprocess.TimeoutExpired) as exc:
            rc, out, err = 127, "", f"twinrun: {argv[0]}: {exc}"
        print(json.dumps({"argv": argv, "rc": rc, "stdout": out, "stderr": err}), flush=True)
        if rc != 0:
            return rc
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    ap = argparse.ArgumentParser(description="twin node process control")
    sub = ap.add_subparsers(dest="action", required=True)
    p_start = sub.add_parser("start")
    p_start.add_argument("name")
    p_start.add_argument("--ready-tcp")
    p_start.add_argument("--timeout", type=float, default=30.0)
    p_stop = sub.add_parser("stop")
    p_stop.add_argument("name")
    p_stop.add_argument("--timeout", type=float, default=10.0)
    sub.add_parser("kill").add_argument("name")
    sub.add_parser("status").add_argument("name")
    sub.add_parser("sysctl").add_argument("pairs", nargs="+")
    p_batch = sub.add_parser("batch")
    p_batch.add_argument("commands", help="JSON list of argv lists")
    p_batch.add_argument("--timeout", type=float, default=60.0, help="per command")
    args = ap.parse_args(argv)
    if args.action == "batch":
        return batch(json.loads(args.commands), args.timeout)
    if args.action == "sysctl":
        return set_sysctls(args.pairs)
    if args.action == "start":
        return start(args.name, command, args.ready_tcp, args.timeout)
    if args.action == "stop":
        return stop(args.name, args.timeout)
    if args.action == "kill":
        return stop(args.name, 0.0, signal.SIGKILL)
    pid = running_pid(args.name)
    print(f"{args.name} running (pid {pid})" if pid else f"{args.name} not running")
    return 0 if pid else 3


if __name__ == "__main__":
    sys.exit(main())
