#!/usr/bin/env python3
"""Stand-in for Traefik on a twin node (stdlib only; copied into the lab container and run there).

Answers every HTTP request on <VIP>:<port> with 200 and the body "served-by: <node>\\n", plus the header
"X-Served-By: <node>", so that probes through the gateway's ECMP route see which node answered.
Logs one line per request to --log; exits cleanly on SIGTERM/SIGINT; restartable at once (SO_REUSEADDR).
"""
from __future__ import annotations

import argparse
import sys

try:  # in the container: beside this script; in tests: the package
    from standin_common import LoggingHandler, Server, open_log, serve_until_signalled  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    from generators.in_container.standin_common import LoggingHandler, Server, open_log, serve_until_signalled



def make_handler(node: str, log):
    body = f"served-by: {node}\n".encode()

    class Handler(LoggingHandler):
        server_version = "twin-traefik"
        log_file = log

        def _answer(self, with_body: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Served-By", node)
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(False)

    return Handler


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bind", required=True, help="the Traefik VIP (on the node's loopback)")
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--node", required=True)
    ap.add_argument("--log", default="-")
    args = ap.parse_args(argv)
    log = open_log(args.log)
    server = Server((args.bind, args.port), make_handler(args.node, log))
    return serve_until_signalled(server, log, f"stand-in traefik for {args.node} on http://{args.bind}:{args.port}")


if __name__ == "__main__":
    sys.exit(main())
