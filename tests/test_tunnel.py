"""ExecTunnel + relay.py on loopback only: the relay command is this Python running relay.py to 127.0.0.1.

The CONNECT targets (10.31.0.x, as in the lab) are only text in a request line here: the relay always
connects to 127.0.0.1, so nothing but loopback is contacted.
"""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from generators.cluster.client import ClusterTarget, ClusterUnreachable, api_client, server_version
from generators.in_container import relay
from generators.lab.tunnel import ExecTunnel
from generators.pki import ensure_ca, ensure_node_cert

RELAY = Path(relay.__file__)


def to_loopback(host: str, port: int) -> list[str]:
    return [sys.executable, str(RELAY), "127.0.0.1", str(port)]


class Server:
    """A loopback TCP server running ``handle(conn)`` for every connection, in threads."""

    def __init__(self, handle: Callable[[socket.socket], None], tls: ssl.SSLContext | None = None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.handle, self.tls = handle, tls
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self.handle(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


@pytest.fixture()
def echo_server() -> Iterator[Server]:
    s = Server(echo)
    yield s
    s.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    ensure_node_cert(d, "echo", ["127.0.0.1", "10.31.0.10"])
    ensure_ca(d / "other")
    return d


@pytest.fixture()
def tls_echo_server(pki) -> Iterator[Server]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "echo-apiserver.crt", pki / "echo-apiserver.key")
    s = Server(echo, tls=ctx)
    yield s
    s.close()


def connect(tunnel: ExecTunnel, target: str) -> tuple[socket.socket, bytes]:
    """CONNECT through the tunnel; (socket, the response head)."""
    s = socket.create_connection(("127.0.0.1", tunnel.port), timeout=10)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    return s, head


def recv_exactly(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(min(1 << 20, n - len(out)))
        if not chunk:
            break
        out += chunk
    return out


# ----------------------------------------------------------------------------------------------- tunnel
def test_bytes_flow_both_ways_through_the_relay(echo_server):
    with ExecTunnel(to_loopback) as tunnel:
        assert tunnel.url == f"http://127.0.0.1:{tunnel.port}"
        s, head = connect(tunnel, f"10.31.0.10:{echo_server.port}")
        assert head == b"HTTP/1.1 200 Connection established\r\n\r\n"
        payload = bytes(range(256)) * 8192  # 2 MiB, more than any pipe buffer
        threading.Thread(target=s.sendall, args=(payload,), daemon=True).start()
        assert recv_exactly(s, len(payload)) == payload
        s.close()
        assert tunnel.connects == [("10.31.0.10", echo_server.port)]
    assert all(p.poll() is not None for p in tunnel.processes)


def test_tls_through_the_tunnel_is_verified_end_to_end(tls_echo_server, pki):
    good = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    other = ssl.create_default_context(cafile=str(pki / "other" / "ca.crt"))
    with ExecTunnel(to_loopback) as tunnel:
        s, head = connect(tunnel, f"10.31.0.10:{tls_echo_server.port}")
        assert head.startswith(b"HTTP/1.1 200")
        with good.wrap_socket(s, server_hostname="10.31.0.10") as t:
            t.sendall(b"over TLS")
            assert recv_exactly(t, 8) == b"over TLS"
            assert t.getpeercert()["subjectAltName"] == (("IP Address", "127.0.0.1"), ("IP Address", "10.31.0.10"))
        s, _ = connect(tunnel, f"10.31.0.11:{tls_echo_server.port}")
        with pytest.raises(ssl.SSLCertVerificationError, match="not valid for '10.31.0.11'"):
            good.wrap_socket(s, server_hostname="10.31.0.11")
        s.close()
        s, _ = connect(tunnel, f"10.31.0.10:{tls_echo_server.port}")
        with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
            other.wrap_socket(s, server_hostname="10.31.0.10")
        s.close()


def test_a_relay_that_exits_at_once_is_a_502_with_its_code_and_message():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: refused
        with ExecTunnel(to_loopback) as tunnel:
            s, head = connect(tunnel, f"10.31.0.10:{port}")
            s.close()
    status = head.split(b"\r\n")[0].decode()
    assert status.startswith("HTTP/1.1 502 Bad Gateway: the relay to 10.31.0.10:")
    assert f"exited with code {relay.EXIT_CONNECT}" in status and "Connection refused" in status
    assert tunnel.failures == [status.removeprefix("HTTP/1.1 ")]


def test_a_relay_command_that_cannot_start_is_a_502():
    with ExecTunnel(lambda h, p: ["/nonexistent/docker", "exec"]) as tunnel:
        s, head = connect(tunnel, "10.31.0.10:6443")
        s.close()
    assert head.startswith(b"HTTP/1.1 502 Bad Gateway: cannot start the relay to 10.31.0.10:6443")


def test_a_relay_that_never_connects_is_a_504_and_is_stopped():
    hang = [sys.executable, "-c", "import time; time.sleep(60)"]
    with ExecTunnel(lambda h, p: hang, ready_timeout=0.5) as tunnel:
        t0 = time.monotonic()
        s, head = connect(tunnel, "10.31.0.10:6443")
        s.close()
        assert head.startswith(b"HTTP/1.1 504 Gateway Timeout") and time.monotonic() - t0 < 10
    assert all(p.poll() is not None for p in tunnel.processes)


@pytest.mark.parametrize("request_line, status", [
    (b"GET http://10.31.0.10/ HTTP/1.1", b"405"),
    (b"CONNECT 10.31.0.10 HTTP/1.1", b"400"),
    (b"CONNECT 10.31.0.10:99999 HTTP/1.1", b"400"),
    (b"hello", b"400"),
])
def test_what_is_not_a_connect_is_refused(request_line, status):
    with ExecTunnel(to_loopback) as tunnel:
        with socket.create_connection(("127.0.0.1", tunnel.port), timeout=10) as s:
            s.sendall(request_line + b"\r\n\r\n")
            assert s.recv(200).split(b" ")[1] == status
    assert tunnel.processes == []


def test_leaving_the_tunnel_closes_open_connections_and_their_relays(echo_server):
    tunnel = ExecTunnel(to_loopback)
    with tunnel:
        s, head = connect(tunnel, f"10.31.0.10:{echo_server.port}")
        assert head.startswith(b"HTTP/1.1 200")
        s.sendall(b"ping")
        assert recv_exactly(s, 4) == b"ping"
    assert s.recv(10) == b""  # the tunnel closed its side
    s.close()
    assert len(tunnel.processes) == 1 and tunnel.processes[0].poll() is not None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", tunnel.port), timeout=2)


class _Version(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        body = json.dumps({"major": "1", "minor": "35", "path": self.path,
                           "auth": self.headers.get("Authorization", "")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_kubernetes_client_issues_connect_and_verifies_tls_inside(pki, tmp_path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Version)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "echo-apiserver.crt", pki / "echo-apiserver.key")
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    try:
        with ExecTunnel(to_loopback) as tunnel:
            target = ClusterTarget(server=f"https://10.31.0.10:{port}", ca_file=pki / "ca.crt", token_file=token,
                                   proxy=tunnel.url, timeout=5)
            got = server_version(api_client(target))
            assert got["path"] == "/version" and got["auth"] == "Bearer s3cret"
            assert tunnel.connects == [("10.31.0.10", port)]
            wrong_host = ClusterTarget(server=f"https://10.31.0.11:{port}", ca_file=pki / "ca.crt",
                                       proxy=tunnel.url, timeout=5)
            with pytest.raises(ClusterUnreachable, match="not valid for '10.31.0.11'"):
                server_version(api_client(wrong_host))
            wrong_ca = ClusterTarget(server=f"https://10.31.0.10:{port}", ca_file=pki / "other" / "ca.crt",
                                     proxy=tunnel.url, timeout=5)
            with pytest.raises(ClusterUnreachable, match="certificate verify failed"):
                server_version(api_client(wrong_ca))
            assert [c[0] for c in tunnel.connects] == ["10.31.0.10", "10.31.0.11", "10.31.0.10"]
    finally:
        httpd.shutdown()
        httpd.server_close()


# ------------------------------------------------------------------------------------------------ relay
def run_relay(*args: str, stdin: bytes = b"", timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RELAY), *args], input=stdin, capture_output=True, timeout=timeout)


def test_relay_copies_both_ways_and_keeps_stdout_for_the_bytes():
    received: list[bytes] = []

    def greet_then_read(conn: socket.socket) -> None:
        conn.sendall(b"hello from the server\n")
        buf = b""
        while data := conn.recv(65536):
            buf += data
            if buf.endswith(b"END"):
                break
        received.append(buf)

    server = Server(greet_then_read)
    try:
        res = run_relay("127.0.0.1", str(server.port), stdin=b"from stdin END")
    finally:
        server.close()
    assert res.returncode == relay.EXIT_OK
    assert res.stdout == b"hello from the server\n"
    assert res.stderr.startswith(relay.READY_PREFIX + f"127.0.0.1:{server.port}".encode())
    assert received == [b"from stdin END"]


def test_relay_exit_codes_and_silent_stdout_on_failure():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused = run_relay("127.0.0.1", str(closed.getsockname()[1]))
    assert (refused.returncode, refused.stdout) == (relay.EXIT_CONNECT, b"")
    assert b"Connection refused" in refused.stderr
    for bad in (["127.0.0.1"], ["127.0.0.1", "http"], ["127.0.0.1", "70000"], ["127.0.0.1", "80", "-1"]):
        res = run_relay(*bad)
        assert (res.returncode, res.stdout) == (relay.EXIT_USAGE, b""), bad
        assert res.stderr.startswith(b"relay: ")
