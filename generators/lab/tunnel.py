"""An HTTP CONNECT proxy on the host's loopback whose connections are made by a command inside the lab.

Lab addresses (10.31.0.0/24, ...) exist only inside the lab's containers, and the host never opens a
connection to them. :class:`ExecTunnel` listens on 127.0.0.1 (an ephemeral port); for each
``CONNECT host:port`` it starts ``argv_for(host, port)``, for the lab::

    ["docker", "exec", "-i", "<container>", "python3", "/opt/lab/relay.py", host, str(port)]

(:mod:`generators.in_container.relay`), and copies bytes between the client's socket and the command's
stdin/stdout. It answers ``200 Connection established`` once the relay says it is connected (its
``relay: connected`` line on stderr), and ``502`` naming the relay's exit code and message when the command
ends before that (``504`` if it neither connects nor exits within ``ready_timeout``). ``url`` is the proxy
URL for :class:`generators.cluster.client.ClusterTarget` ``proxy``: TLS runs end to end inside the tunnel,
so the client still verifies the server's certificate against the host it asked for.
"""

from __future__ import annotations

import collections
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from typing import IO, Callable

from ..errors import EnvironmentProblem
from ..in_container.relay import READY_PREFIX

HEAD_LIMIT = 8192
CHUNK = 65536


class TunnelError(EnvironmentProblem):
    """The tunnel could not listen on the host's loopback."""


@dataclass(eq=False)  # hashed by identity: kept in a set
class _Conn:
    sock: socket.socket
    target: str = ""
    proc: subprocess.Popen[bytes] | None = None
    threads: list[threading.Thread] = field(default_factory=list)


class ExecTunnel:
    """A loopback HTTP CONNECT proxy that relays each connection through ``argv_for(host, port)``.

    Use it as a context manager; leaving it closes the listener, every client connection and every
    relay command. ``connects`` lists the (host, port) of every CONNECT it got, ``failures`` why a CONNECT
    was refused (its status line), ``processes`` the relay commands it started.
    """

    def __init__(self, argv_for: Callable[[str, int], list[str]], *, ready_timeout: float = 15.0,
                 log: Callable[[str], None] | None = None):
        self.argv_for = argv_for
        self.ready_timeout = ready_timeout
        self.log = log or (lambda _m: None)
        self.connects: list[tuple[str, int]] = []
        self.failures: list[str] = []
        self._listener: socket.socket | None = None
        self._port = 0
        self._accept_thread: threading.Thread | None = None
        self._conns: set[_Conn] = set()
        self.processes: list[subprocess.Popen[bytes]] = []  # every relay command started, for diagnostics
        self._handlers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> ExecTunnel:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            sock.listen(64)
        except OSError as exc:
            sock.close()
            raise TunnelError(f"cannot listen on 127.0.0.1 for the lab tunnel: {exc}; is the loopback "
                              "interface up?") from exc
        self._listener = sock
        self._port = int(sock.getsockname()[1])
        self._accept_thread = threading.Thread(target=self._accept_loop, name="tunnel-accept", daemon=True)
        self._accept_thread.start()

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("the tunnel is not started; use it as a context manager")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._listener is not None:
            _shutdown(self._listener)  # wakes accept() (close alone does not on Linux)
            self._listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            _shutdown(c.sock)
            if c.proc is not None:
                _close_quietly(c.proc.stdin)
        for c in conns:
            if c.proc is not None:
                _end(c.proc)
        for t in list(self._handlers):
            t.join(timeout=5)

    # ------------------------------------------------------------------ serving
    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._closed.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            conn = _Conn(sock)
            with self._lock:
                self._conns.add(conn)
            t = threading.Thread(target=self._serve, args=(conn,), name="tunnel-conn", daemon=True)
            self._handlers = [h for h in self._handlers if h.is_alive()] + [t]
            t.start()

    def _serve(self, conn: _Conn) -> None:
        try:
            self._serve_one(conn)
        except OSError as exc:  # the client went away mid-way
            self.log(f"tunnel {conn.target or '?'}: {exc}")
        finally:
            if conn.proc is not None:
                _close_quietly(conn.proc.stdin)
                _end(conn.proc)
            _shutdown(conn.sock)
            conn.sock.close()
            for t in conn.threads:
                t.join(timeout=5)
            with self._lock:
                self._conns.discard(conn)

    def _refuse(self, conn: _Conn, code: int, reason: str) -> None:
        reason = "".join(ch if 32 <= ord(ch) < 127 else " " for ch in reason)[:400]
        self.failures.append(f"{code} {reason}")
        self.log(f"tunnel: {code} {reason}")
        body = (reason + "\n").encode()
        conn.sock.sendall(f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                          f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)

    def _serve_one(self, conn: _Conn) -> None:
        conn.sock.settimeout(self.ready_timeout)
        head, rest = _read_head(conn.sock)
        if head is None:
            return self._refuse(conn, 400, "Bad Request: no complete request head")
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return self._refuse(conn, 400, "Bad Request: not an HTTP request line")
        method, target, _ = parts
        if method != "CONNECT":
            return self._refuse(conn, 405, f"Method Not Allowed: {method}; this is a CONNECT proxy only")
        hostport = _split_target(target)
        if hostport is None:
            return self._refuse(conn, 400, f"Bad Request: CONNECT target {target!r} is not HOST:PORT")
        host, port = hostport
        conn.target = f"{host}:{port}"
        self.connects.append((host, port))
        try:
            argv = self.argv_for(host, port)
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    bufsize=0, start_new_session=True)
        except Exception as exc:  # whatever argv_for or Popen raise, the client gets a 502
            return self._refuse(conn, 502, f"Bad Gateway: cannot start the relay to {conn.target}: {exc}")
        conn.proc = proc
        self.processes.append(proc)
        ready = threading.Event()
        changed = threading.Event()
        tail: collections.deque[str] = collections.deque(maxlen=10)
        err_reader = threading.Thread(target=_read_stderr, args=(proc.stderr, ready, changed, tail), daemon=True)
        conn.threads.append(err_reader)
        err_reader.start()
        ended = changed.wait(self.ready_timeout)  # the relay either says it is connected or ends (stderr closes)
        if not ready.is_set():
            code = _wait(proc, 2.0) if ended else None
            said = "; ".join(tail) or "no message"
            if code is None:
                proc.terminate()
                return self._refuse(conn, 504, f"Gateway Timeout: the relay to {conn.target} did not connect "
                                    f"within {self.ready_timeout:g}s ({said})")
            return self._refuse(conn, 502, f"Bad Gateway: the relay to {conn.target} exited with code {code}: "
                                f"{said}")
        conn.sock.settimeout(None)
        conn.sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        assert proc.stdin is not None and proc.stdout is not None
        up = threading.Thread(target=_client_to_stdin, args=(conn.sock, proc.stdin, rest), daemon=True)
        conn.threads.append(up)
        up.start()
        _stdout_to_client(proc.stdout, conn.sock)


def _read_head(sock: socket.socket) -> tuple[bytes | None, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > HEAD_LIMIT:
            return None, b""
        try:
            data = sock.recv(4096)
        except socket.timeout:
            return None, b""
        if not data:
            return None, b""
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def _split_target(target: str) -> tuple[str, int] | None:
    host, sep, port_s = target.rpartition(":")
    if not sep or not host or not port_s.isdigit():
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_s)
    if not 0 < port < 65536 or any(c.isspace() for c in host):
        return None
    return host, port


def _read_stderr(stream: IO[bytes] | None, ready: threading.Event, changed: threading.Event,
                 tail: collections.deque[str]) -> None:
    if stream is None:
        changed.set()
        return
    try:
        for line in iter(stream.readline, b""):
            if not ready.is_set() and line.startswith(READY_PREFIX):
                ready.set()
                changed.set()
            else:
                tail.append(line.decode("utf-8", "replace").strip())
    except (OSError, ValueError):
        pass
    finally:
        changed.set()


def _client_to_stdin(sock: socket.socket, stdin: IO[bytes], first: bytes) -> None:
    try:
        if first:
            _write_all(stdin, first)
        while True:
            data = sock.recv(CHUNK)
            if not data:
                break
            _write_all(stdin, data)
    except (OSError, ValueError):
        pass
    finally:
        _close_quietly(stdin)  # the relay sees EOF and ends


def _stdout_to_client(stdout: IO[bytes], sock: socket.socket) -> None:
    try:
        while True:
            data = stdout.read(CHUNK)
            if not data:
                break
            sock.sendall(data)
    except (OSError, ValueError):
        pass
    finally:
        _shutdown(sock)  # the far side closed: close the client's side too (wakes _client_to_stdin)


def _write_all(stream: IO[bytes], data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = stream.write(view)
        view = view[n or 0:]


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _close_quietly(stream: IO[bytes] | None) -> None:
    if stream is not None:
        try:
            stream.close()
        except OSError:
            pass


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Stop a relay command: its stdin is closed already, so it normally ends by itself; else TERM, then KILL."""
    if _wait(proc, 2.0) is None:
        proc.terminate()
        if _wait(proc, 2.0) is None:
            proc.kill()
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        _close_quietly(stream)
