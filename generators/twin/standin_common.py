"""What both stand-ins share (stdlib only; copied into the twin node beside them)."""
from __future__ import annotations

import signal
import socketserver
import threading
from http.server import ThreadingHTTPServer
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
