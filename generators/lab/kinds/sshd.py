"""SSH into lab machines, the way the rack's machines are reached: sshd with a host key per machine, one
client key per lab, and a ``known_hosts`` that names exactly those host keys (so the lab checks host keys
strictly, as a careful rack inventory does).

Keys live under the lab's state directory (``LabPaths.ssh``, 0700; private keys 0600) and are made once per
lab. A kind that wants its machines reachable puts :func:`sshd_files` into them and runs :func:`START`
after; both are idempotent.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from ... import pki
from ...errors import LabError
from ..names import LabPaths
from .base import NodeAccess, put_changed

CLIENT_KEY = "id_ed25519"
KNOWN_HOSTS = "known_hosts"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"
CONFIG = "/etc/ssh/sshd_config.d/k3s-bgp-lab.conf"
SSHD_CONFIG = f"""# written by k3s-bgp-lab: key logins only, this machine's own host key
HostKey {HOST_KEY}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""
# start sshd unless it runs; it daemonizes itself and logs to the container's syslog-less stderr
START = ["sh", "-c", "mkdir -p /run/sshd && chmod 0755 /run/sshd && (pgrep -x sshd >/dev/null || /usr/sbin/sshd)"]


def client_key(paths: LabPaths) -> Path:
    return paths.ssh / CLIENT_KEY


def known_hosts(paths: LabPaths) -> Path:
    return paths.ssh / KNOWN_HOSTS


def _host_key(paths: LabPaths, machine: str) -> Path:
    return paths.ssh / "hosts" / machine / "ssh_host_ed25519_key"


def sshd_files(paths: LabPaths, machine: str, address: str) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(public files, secret files) that make ``machine`` accept the lab's key; records its host key for
    ``address`` in the lab's known_hosts."""
    client_pub = pki.ensure_ssh_key(client_key(paths), "k3s-bgp-lab lab client")
    host_pub = pki.ensure_ssh_key(_host_key(paths, machine), f"{machine} host key")
    _record_host(paths, address, host_pub)
    host_key = _host_key(paths, machine)
    public = {CONFIG: SSHD_CONFIG.encode(), f"{HOST_KEY}.pub": (host_pub + "\n").encode()}
    secret = {HOST_KEY: host_key.read_bytes(), AUTHORIZED_KEYS: (client_pub + "\n").encode()}
    return public, secret


def _record_host(paths: LabPaths, address: str, host_pub: str) -> None:
    """``address keytype key`` in the lab's known_hosts, replacing an older line for that address."""
    path = known_hosts(paths)
    keytype, key = host_pub.split()[:2]
    line = f"{address} {keytype} {key}"
    lines = path.read_text().splitlines() if path.is_file() else []
    kept = [x for x in lines if x.split(" ", 1)[0] != address]
    if line in lines and len(kept) == len(lines) - 1:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join([*kept, line]) + "\n")
    tmp.replace(path)


def install(access: NodeAccess, machine: str, address: str) -> list[str]:
    """sshd running in ``machine`` with its host key and the lab's client key (idempotent); what changed."""
    return install_files(access, machine, sshd_files(access.paths, machine, address))


def install_files(access: NodeAccess, machine: str, files: tuple[dict[str, bytes], dict[str, bytes]]) -> list[str]:
    """:func:`install` with the files made already (they are made on the host, one machine at a time: the
    lab's known_hosts is one file; this part may run for several machines at once)."""
    public, secret = files
    wrote = put_changed(access, machine, public, secret, {"/root/.ssh": 0o700})
    if wrote:
        access.exec(machine, ["sh", "-c", "pkill -x sshd; true"])
    res = access.exec(machine, START)
    if res.exit_code != 0:
        raise LabError(f"{machine}: sshd does not start (exit {res.exit_code})", res.stderr.strip().splitlines()[-5:])
    return [f"{machine}: sshd configured ({len(wrote)} file(s))"] if wrote else []


def proxy_command(client_container: str, relay: str, connect_timeout: int) -> str:
    """OpenSSH ``ProxyCommand`` that opens the TCP connection from inside the lab's client container."""
    return shlex.join(["docker", "exec", "-i", client_container, "python3", relay]) + f" %h %p {connect_timeout}"
