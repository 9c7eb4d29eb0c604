#!/usr/bin/env python3
"""Drill probe: runs INSIDE the lab's ``client`` container (standard library only).

Opens NEW connections at a fixed rate to each VIP and writes one JSON line per attempt:

- ``apiserver``: TCP connect, TLS handshake verified against the lab CA with
  ``server_hostname`` = the DNS name, ``GET /healthz``; the answering node is the
  ``X-Served-By`` response header.
- ``traefik``: TCP connect, ``GET /``; the node is ``X-Served-By`` (or ``served-by: NODE`` in the body).
  For the apiserver, a real kube-apiserver sends no ``X-Served-By``: the node is the CN of its serving
  certificate (each node's is its own, see generators.pki).

Schedule: attempt k of every VIP starts at ``t0 + k / rate`` (monotonic clock; wall-clock times are
recorded as ``t0_wall + offset``). Each attempt runs in its own worker thread with an overall
timeout, so a hanging attempt never delays the schedule. The probe stops by itself after
``--max-duration`` seconds or as soon as ``--stop-file`` exists, waits for attempts in flight, and
writes a final ``{"type": "end"}`` line. ``--status`` is rewritten (atomically) about every 0.5 s
with counters and the nodes seen recently, for whoever drives the drill to poll cheaply.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import socket
import ssl
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

try:  # in the lab container: beside this script; in tests: the package
    from agent_common import FixedSchedule  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    from generators.in_container.agent_common import FixedSchedule

SERVED_BY_BODY = re.compile(rb"served-by:\s*([A-Za-z0-9_.-]+)", re.IGNORECASE)
MAX_RESPONSE = 64 * 1024


class AttemptError(Exception):
    """An attempt that failed; ``kind`` is the short outcome written to the samples."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def classify_os_error(exc: BaseException, phase: str) -> AttemptError:
    """Map a socket/TLS exception to a stable outcome kind (``refused``, ``timeout``, ...)."""
    if isinstance(exc, AttemptError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return AttemptError("tls-verify", str(exc.verify_message or exc))
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return AttemptError(f"{phase}-timeout", str(exc))
    if isinstance(exc, ConnectionRefusedError):
        return AttemptError("refused", str(exc))
    if isinstance(exc, ConnectionResetError):
        return AttemptError("reset", str(exc))
    if isinstance(exc, ssl.SSLError):
        return AttemptError("tls", str(exc))
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return AttemptError("unreachable", str(exc))
    if isinstance(exc, (BrokenPipeError, ConnectionAbortedError)):
        return AttemptError("reset", str(exc))
    return AttemptError("error", f"{type(exc).__name__}: {exc}")


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status code, lower-cased headers and body of an HTTP/1.x response."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise AttemptError("http-incomplete", f"no end of headers in {len(raw)} bytes")
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise AttemptError("http-garbled", lines[0][:80])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, body


def served_by(headers: dict[str, str], body: bytes) -> str | None:
    if headers.get("x-served-by"):
        return headers["x-served-by"]
    match = SERVED_BY_BODY.search(body)
    return match.group(1).decode() if match else None


def served_by_certificate(cert: dict | None) -> str | None:
    """The node whose apiserver answered, from its serving certificate (the lab's CN: ``<node> apiserver``).

    A real kube-apiserver sends no X-Served-By; its certificate is the node's own (exactly its tls-san).
    """
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and value.endswith(" apiserver"):
                return str(value).split()[0]
    return None


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise AttemptError("timeout", "attempt deadline reached")
    return left


def _read_all(sock: socket.socket, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < MAX_RESPONSE:
        sock.settimeout(_remaining(deadline))
        try:
            data = sock.recv(8192)
        except (socket.timeout, TimeoutError) as exc:
            raise AttemptError("read-timeout", str(exc)) from exc
        if not data:
            break
        chunks.append(data)
        size += len(data)
    return b"".join(chunks)


def http_exchange(sock: socket.socket, host: str, path: str, deadline: float) -> tuple[int, str | None]:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: drill-probe\r\nConnection: close\r\n\r\n"
    sock.settimeout(_remaining(deadline))
    sock.sendall(request.encode())
    status, headers, body = parse_response(_read_all(sock, deadline))
    return status, served_by(headers, body)


def connect(ip: str, port: int, deadline: float) -> socket.socket:
    try:
        return socket.create_connection((ip, port), timeout=_remaining(deadline))
    except OSError as exc:
        raise classify_os_error(exc, "connect") from exc


def attempt_apiserver(
    ip: str, port: int, dns_name: str, ctx: ssl.SSLContext, deadline: float
) -> tuple[int, str | None]:
    raw = connect(ip, port, deadline)
    try:
        raw.settimeout(_remaining(deadline))
        try:
            tls = ctx.wrap_socket(raw, server_hostname=dns_name)
        except OSError as exc:
            raise classify_os_error(exc, "tls") from exc
        with tls:
            try:
                status, node = http_exchange(tls, dns_name, "/healthz", deadline)
            except OSError as exc:
                raise classify_os_error(exc, "read") from exc
            return status, node or served_by_certificate(tls.getpeercert())
    finally:
        raw.close()


def attempt_http(ip: str, port: int, deadline: float) -> tuple[int, str | None]:
    sock = connect(ip, port, deadline)
    with sock:
        try:
            return http_exchange(sock, ip, "/", deadline)
        except OSError as exc:
            raise classify_os_error(exc, "read") from exc


class Recorder:
    """Serialises JSON lines from worker threads and keeps the counters for the status file."""

    def __init__(self, out_path: str, status_path: str | None) -> None:
        self._out = open(out_path, "a", encoding="utf-8")
        self._status_path = status_path
        self._lock = threading.Lock()
        self.counts: dict[str, dict[str, int]] = {}
        self.last_ok_by_node: dict[str, dict[str, float]] = {}
        self.last_failure: dict[str, float] = {}

    def write(self, record: dict) -> None:
        line = json.dumps(record, sort_keys=True)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()
            if record.get("type") == "attempt":
                self._count(record)

    def _count(self, rec: dict) -> None:
        vip = rec["vip"]
        per = self.counts.setdefault(vip, {"ok": 0, "failed": 0})
        if rec["outcome"] == "ok":
            per["ok"] += 1
            if rec.get("node"):
                self.last_ok_by_node.setdefault(vip, {})[rec["node"]] = rec["t_start"]
        else:
            per["failed"] += 1
            self.last_failure[vip] = max(self.last_failure.get(vip, 0.0), rec["t_start"])

    def write_status(self, now_wall: float, done: bool = False) -> None:
        if not self._status_path:
            return
        with self._lock:
            status = {
                "t": now_wall,
                "done": done,
                "counts": self.counts,
                "last_ok_by_node": self.last_ok_by_node,
                "last_failure": self.last_failure,
            }
            tmp = self._status_path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(status, fh, sort_keys=True)
            os.replace(tmp, self._status_path)

    def close(self) -> None:
        with self._lock:
            self._out.close()


def make_tls_context(ca_path: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_path)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def build_targets(args: argparse.Namespace) -> list[tuple[str, object]]:
    """(vip role, callable(deadline) -> (status, node)) for every VIP that was asked for."""
    targets: list[tuple[str, object]] = []
    if args.apiserver_vip:
        ctx = make_tls_context(args.ca)
        ip, port, name = args.apiserver_vip, args.apiserver_port, args.dns_name
        targets.append(("apiserver", lambda deadline: attempt_apiserver(ip, port, name, ctx, deadline)))
    if args.traefik_vip:
        tip, tport = args.traefik_vip, args.traefik_port
        targets.append(("traefik", lambda deadline: attempt_http(tip, tport, deadline)))
    return targets


def run_attempt(role: str, fn, k: int, t_sched_wall: float, wall_of, timeout: float, recorder: Recorder) -> None:
    start = time.monotonic()
    record = {"type": "attempt", "vip": role, "k": k, "t_sched": t_sched_wall, "t_start": wall_of(start)}
    try:
        status, node = fn(start + timeout)
        record["status"] = status
        record["node"] = node
        record["outcome"] = "ok" if status == 200 else f"http-{status}"
    except AttemptError as exc:
        record["outcome"], record["detail"], record["node"] = exc.kind, exc.detail[:200], None
    except Exception as exc:  # noqa: BLE001 - every failure is a sample, never a crash of the probe
        err = classify_os_error(exc, "attempt")
        record["outcome"], record["detail"], record["node"] = err.kind, err.detail[:200], None
    record["latency"] = round(time.monotonic() - start, 6)
    recorder.write(record)


def run(args: argparse.Namespace) -> int:
    targets = build_targets(args)
    if not targets:
        print("probe: give --apiserver-vip and/or --traefik-vip", file=sys.stderr)
        return 2
    interval = 1.0 / args.rate
    workers = len(targets) * (int(args.rate * args.timeout) + 2) * 2
    recorder = Recorder(args.out, args.status)
    t0_mono = time.monotonic()
    t0_wall = time.time()

    def wall_of(mono: float) -> float:
        return t0_wall + (mono - t0_mono)

    recorder.write(
        {
            "type": "meta",
            "agent": "probe",
            "t0": t0_wall,
            "rate": args.rate,
            "interval": interval,
            "timeout": args.timeout,
            "vips": {role: None for role, _ in targets},
            "apiserver_vip": args.apiserver_vip,
            "traefik_vip": args.traefik_vip,
            "dns_name": args.dns_name,
            "pid": os.getpid(),
        }
    )
    next_status = t0_mono
    schedule = FixedSchedule(interval, args.max_duration, args.stop_file, t0=t0_mono)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="attempt") as pool:
        for k, due in schedule:
            for role, fn in targets:
                pool.submit(run_attempt, role, fn, k, wall_of(due), wall_of, args.timeout, recorder)
            if time.monotonic() >= next_status:
                recorder.write_status(time.time())
                next_status = time.monotonic() + 0.5
    recorder.write({"type": "end", "t": time.time(), "reason": schedule.reason, "attempts_per_vip": schedule.next_k})
    recorder.write_status(time.time(), done=True)
    recorder.close()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--apiserver-vip")
    p.add_argument("--apiserver-port", type=int, default=6443)
    p.add_argument("--dns-name", help="TLS server name for the apiserver VIP")
    p.add_argument("--ca", help="lab CA bundle (PEM) inside this container")
    p.add_argument("--traefik-vip")
    p.add_argument("--traefik-port", type=int, default=80)
    p.add_argument("--rate", type=float, default=10.0, help="new connections per second per VIP")
    p.add_argument("--timeout", type=float, default=1.0, help="overall timeout of one attempt, seconds")
    p.add_argument("--max-duration", type=float, default=600.0)
    p.add_argument("--stop-file")
    p.add_argument("--status", help="status JSON rewritten about every 0.5 s")
    p.add_argument("--out", required=True, help="JSON lines output")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.timeout <= 0:
        p.error("--rate and --timeout must be positive")
    if args.apiserver_vip and not (args.dns_name and args.ca):
        p.error("--apiserver-vip needs --dns-name and --ca")
    return args


if __name__ == "__main__":
    sys.exit(run(parse_args()))
