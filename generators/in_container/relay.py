"""Relay one TCP connection over stdin/stdout: ``python3 relay.py HOST PORT [CONNECT_TIMEOUT]``.

Runs inside a lab container (standard library only), started by ``docker exec -i`` for the host's
:class:`generators.lab.tunnel.ExecTunnel`: the container, not the host, opens the connection to the lab
address. Connects to HOST:PORT, writes one line ``relay: connected HOST:PORT`` on stderr, then copies
stdin -> socket and socket -> stdout until either side closes: when the server closes, the relay ends;
when stdin ends, the relay passes the EOF on (half-close) and ends when the server closes, or after
``LINGER`` seconds at most (as socat does). stdout carries the relayed bytes and nothing else;
diagnostics go to stderr.

Exit codes: 0 a side closed (normal end), 2 bad arguments, 3 could not connect (refused, unreachable,
name not known), 4 the connect timed out, 5 the connection broke after it was established.
"""

from __future__ import annotations

import os
import socket
import sys
import threading

READY_PREFIX = b"relay: connected "
EXIT_OK, EXIT_USAGE, EXIT_CONNECT, EXIT_TIMEOUT, EXIT_BROKEN = 0, 2, 3, 4, 5
CHUNK = 65536
LINGER = 2.0  # after stdin's EOF, how long the server may still answer before the relay ends


def _err(msg: str) -> None:
    try:
        os.write(2, f"relay: {msg}\n".encode())
    except OSError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _stdin_to_socket(sock: socket.socket, done: threading.Event, broken: list[str]) -> None:
    try:
        while True:
            data = os.read(0, CHUNK)
            if not data:
                break
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # pass the EOF on, and let the server answer what it got
    except OSError as exc:
        if not done.is_set():
            broken.append(f"sending to the server: {exc}")
    if not done.wait(LINGER):
        try:
            sock.shutdown(socket.SHUT_RDWR)  # the server keeps its side open: end the relay (wakes the reader)
        except OSError:
            pass


def relay(host: str, port: int, connect_timeout: float) -> int:
    try:
        sock = socket.create_connection((host, port), timeout=connect_timeout)
    except socket.timeout:
        _err(f"connecting to {host}:{port} timed out after {connect_timeout:g}s")
        return EXIT_TIMEOUT
    except OSError as exc:
        _err(f"cannot connect to {host}:{port}: {exc.strerror or exc}")
        return EXIT_CONNECT
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        os.write(2, READY_PREFIX + f"{host}:{port}\n".encode())
    except OSError:
        pass  # nobody reads stderr: relay anyway
    done = threading.Event()
    broken: list[str] = []
    threading.Thread(target=_stdin_to_socket, args=(sock, done, broken), daemon=True).start()
    try:
        while True:
            data = sock.recv(CHUNK)
            if not data:
                break
            _write_all(1, data)
    except BrokenPipeError:
        pass  # stdout's reader went away: that side closed
    except OSError as exc:
        if not done.is_set():
            broken.append(f"receiving from the server: {exc}")
    finally:
        done.set()
        sock.close()
    if broken:
        _err(broken[0])
        return EXIT_BROKEN
    return EXIT_OK


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        _err("usage: relay.py HOST PORT [CONNECT_TIMEOUT_SECONDS]")
        return EXIT_USAGE
    try:
        port = int(argv[1])
        timeout = float(argv[2]) if len(argv) == 3 else 10.0
        if not 0 < port < 65536 or timeout <= 0:
            raise ValueError
    except ValueError:
        _err(f"bad arguments {argv!r}: PORT must be 1..65535 and CONNECT_TIMEOUT a positive number")
        return EXIT_USAGE
    return relay(argv[0], port, timeout)


if __name__ == "__main__":
    code = main(sys.argv[1:])
    try:
        os.close(1)
    except OSError:
        pass
    os._exit(code)  # the stdin thread may still block in read(); nothing is left to flush
