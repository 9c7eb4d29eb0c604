"""What both stand-ins share (stdlib only; copied into the twin node beside them)."""
from __future__ import annotations

import signal
import socketserver
import sys
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TextIO


class Server(ThreadingHTTPServer):
    """No reverse DNS lookup at bind (http.server's getfqdn can stall for seconds without a resolver)."""

    allow_reuse_address = True
    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


def serve_until_signalled(server, log: TextIO, banner: str) -> int:
    """Serve until SIGTERM/SIGINT, logging the banner first and the signal last."""

    def stop(signum, _frame) -> None:
        log.write(f"signal {signum}: stopping\n")
        log.flush()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.write(banner + "\n")
    log.flush()
    server.serve_forever()
    server.server_close()
    return 0


class LoggingHandler(BaseHTTPRequestHandler):
    """One timestamped line per request to ``log_file`` (set by the subclass)."""

    log_file: TextIO = sys.stderr

    def log_message(self, fmt: str, *args) -> None:
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        self.log_file.write(f"{stamp} {self.client_address[0]} {fmt % args}\n")
        self.log_file.flush()


def open_log(path: str) -> TextIO:
    """``-`` is stderr; anything else is appended to."""
    return sys.stderr if path == "-" else open(path, "a", encoding="utf-8")
