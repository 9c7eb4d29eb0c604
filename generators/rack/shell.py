"""Running commands on a machine of the rollout: over OpenSSH on the rack, the same way on the lab.

A :class:`Shell` runs one POSIX shell command line on one target and returns its exit code and output.
:class:`SshShell` is OpenSSH's client (``ssh``, a maintained tool, never a hand-rolled protocol) with the
target's settings from the inventory's ``rack:`` section; on a lab it gets a ``ProxyCommand`` that opens
the TCP connection from inside the lab's client container (lab addresses exist only there), and the
same sshd, keys and known_hosts checks apply. One control connection is kept per target while the
shell is open (``ControlMaster``), so a plan's several reads cost one handshake.

Errors: a target that cannot be reached, refuses the key or has an unknown host key raises
:class:`TargetUnreachable` (an environment problem: exit 3) naming the target, within the target's
``connect_timeout``; a command that runs and fails is a :class:`Result` with its exit code.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import EnvironmentProblem, LabToolError
from ..in_container.relay import READY_PREFIX
from ..model import SshTarget

RELAY_READY = READY_PREFIX.decode()  # a lab ProxyCommand's "connected" line on stderr: not an error

SSH_FAILED = 255  # ssh's own exit code for its errors (connection, authentication, host key)
# What ssh prints for each way of not getting in, and what to do about it.
_SSH_ERRORS = (
    ("Host key verification failed", "its host key is not in known_hosts (or changed)",
     "add it (ssh-keyscan -H HOST >> KNOWN_HOSTS, after checking the fingerprint) or set "
     "host_key_policy: accept-new for the first contact"),
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", "its host key changed",
     "check why, then remove the old key with ssh-keygen -R HOST"),
    ("Permission denied", "it refused the login",
     "check rack.<target>.user and key_file, and that the key is in the target's authorized_keys"),
    ("Connection refused", "nothing listens on its SSH port", "start sshd there, or fix rack.<target>.port"),
    ("timed out", "it did not answer in time", "check that it is up and reachable, or raise connect_timeout"),
    ("No route to host", "there is no route to it", "check the address and the network"),
    ("Could not resolve hostname", "its name does not resolve", "fix rack.<target>.host"),
    ("Connection closed", "the connection closed before SSH started", "check that sshd runs there"),
)


class TargetUnreachable(EnvironmentProblem):
    """SSH could not get a session on the target (exit 3)."""


class RemoteCommandFailed(LabToolError):
    """A command that had to succeed on a target failed (exit 1)."""


@dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Shell(Protocol):
    """One target's shell: what the rollout steps use, on the rack and on the lab alike."""

    name: str

    def run(self, command: str, stdin: bytes | None = None, timeout: float = 60) -> Result: ...


def must(shell: Shell, command: str, what: str, stdin: bytes | None = None, timeout: float = 60) -> str:
    """Run ``command``; its stdout, or RemoteCommandFailed naming the target, what failed and its stderr."""
    res = shell.run(command, stdin=stdin, timeout=timeout)
    if not res.ok:
        tail = (res.stderr or res.stdout).strip().splitlines()[-5:]
        raise RemoteCommandFailed(f"{shell.name}: {what} failed (exit {res.exit_code})"
                                  + (": " + " / ".join(tail) if tail else ""))
    return res.stdout


def read_file(shell: Shell, path: str) -> str | None:
    """The file's text, or None when it does not exist."""
    res = shell.run(f"if [ -e {shlex.quote(path)} ]; then cat {shlex.quote(path)}; else exit 44; fi")
    if res.exit_code == 44:
        return None
    if not res.ok:
        raise RemoteCommandFailed(f"{shell.name}: cannot read {path} (exit {res.exit_code}): {res.stderr.strip()}")
    return res.stdout


def file_exists(shell: Shell, path: str) -> bool:
    return shell.run(f"test -e {shlex.quote(path)}").ok


def write_file(shell: Shell, path: str, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file renamed over it); the bytes go on stdin."""
    q = shlex.quote(path)
    tmp = shlex.quote(f"{path}.k3s-bgp-lab.tmp")
    directory = shlex.quote(os.path.dirname(path) or "/")
    must(shell, f"umask 077 && mkdir -p {directory} && cat > {tmp} && chmod {mode:o} {tmp} && mv -f {tmp} {q}",
         f"writing {path}", stdin=data)


class SshShell:
    """OpenSSH to one target. Use as a context manager (it closes the control connection)."""

    def __init__(self, target: SshTarget, proxy_command: str | None = None, ssh: str | None = None):
        self.target = target
        self.name = target.name
        self.proxy_command = proxy_command
        self.ssh = ssh or shutil.which("ssh") or "ssh"
        self._control_dir: str | None = None

    def __enter__(self) -> SshShell:
        self._control_dir = tempfile.mkdtemp(prefix="k3s-bgp-lab-ssh-")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._control_dir is None:
            return
        control = os.path.join(self._control_dir, "c")
        if os.path.exists(control):
            subprocess.run([self.ssh, "-o", f"ControlPath={control}", "-O", "exit", self._destination()],
                           capture_output=True, timeout=10, check=False)
        shutil.rmtree(self._control_dir, ignore_errors=True)
        self._control_dir = None

    def _destination(self) -> str:
        return f"{self.target.user}@{self.target.host}"

    def options(self) -> list[str]:
        """The ``-o`` options this target gets (no prompt ever; host keys checked per policy)."""
        t = self.target
        opts = {
            "BatchMode": "yes",
            "ConnectTimeout": str(t.connect_timeout),
            "ServerAliveInterval": "5",
            "ServerAliveCountMax": "2",
            "StrictHostKeyChecking": "yes" if t.host_key_policy == "strict" else "accept-new",
            "LogLevel": "ERROR",
        }
        if t.known_hosts:
            opts["UserKnownHostsFile"] = str(Path(t.known_hosts).expanduser())
            opts["GlobalKnownHostsFile"] = "/dev/null"
        if t.key_file:
            opts["IdentityFile"] = str(Path(t.key_file).expanduser())
            opts["IdentitiesOnly"] = "yes"
        if self.proxy_command:
            opts["ProxyCommand"] = self.proxy_command
        if self._control_dir:
            opts.update(ControlMaster="auto", ControlPath=os.path.join(self._control_dir, "c"), ControlPersist="60")
        out: list[str] = []
        for key, value in opts.items():
            out += ["-o", f"{key}={value}"]
        return out

    def argv(self, command: str) -> list[str]:
        return [self.ssh, *self.options(), "-p", str(self.target.port), self._destination(), "--", command]

    def _explain(self, stderr: str) -> TargetUnreachable:
        where = f"{self.target.name} ({self._destination()}:{self.target.port})"
        for needle, why, fix in _SSH_ERRORS:
            if needle.lower() in stderr.lower():
                return TargetUnreachable(f"cannot reach {where} over SSH: {why}; "
                                         + fix.replace("<target>", self._section()))
        last = stderr.strip().splitlines()[-1] if stderr.strip() else "no message"
        return TargetUnreachable(f"cannot reach {where} over SSH: {last}")

    def _section(self) -> str:
        return "gateway" if self.target.name == "gateway" else f"nodes.{self.target.name}"

    def run(self, command: str, stdin: bytes | None = None, timeout: float = 60) -> Result:
        budget = self.target.connect_timeout + timeout
        try:
            proc = subprocess.run(self.argv(command), input=stdin if stdin is not None else b"",
                                  capture_output=True, timeout=budget, check=False)
        except FileNotFoundError:
            raise TargetUnreachable("OpenSSH's client (ssh) is not installed: apt-get install openssh-client") \
                from None
        except subprocess.TimeoutExpired:
            raise TargetUnreachable(f"{self.target.name}: no answer over SSH within {budget:g} s "
                                    f"(connect_timeout {self.target.connect_timeout} s + {timeout:g} s for "
                                    f"`{command[:60]}`)") from None
        out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        err = "".join(line for line in err.splitlines(keepends=True) if not line.startswith(RELAY_READY))
        if proc.returncode == SSH_FAILED and not out and _is_ssh_error(err):
            raise self._explain(err)
        return Result(proc.returncode, out, err)


def _is_ssh_error(stderr: str) -> bool:
    text = stderr.lower()
    return any(n.lower() in text for n, _, _ in _SSH_ERRORS) or "ssh:" in text or "kex_exchange" in text \
        or "banner exchange" in text or not text.strip()
