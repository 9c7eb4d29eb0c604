"""What both stand-ins share (stdlib only; copied into the twin node beside them)."""
from __future__ import annotations

import signal
import threading
from typing import TextIO


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
