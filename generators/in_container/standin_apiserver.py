#!/usr/bin/env python3
"""Stand-in kube-apiserver for a twin node (stdlib only; copied into the lab container and run there).

Serves HTTPS on <node-ip>:6443 with the node's certificate (SANs = the node's rendered k3s tls-san):
  /healthz, /livez, /readyz -> "ok"
  /version                  -> JSON like the apiserver's, plus "twinNode"
Every response carries "X-Served-By: <node>". Logs one line per request to --log. Exits cleanly on
SIGTERM/SIGINT; it can be killed and started again at once (SO_REUSEADDR).
"""

from __future__ import annotations

import argparse
import json
import re
import ssl
import sys

try:  # in the container: beside this script; in tests: the package
    from standin_common import LoggingHandler, Server, open_log, serve_until_signalled  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    from generators.in_container.standin_common import LoggingHandler, Server, open_log, serve_until_signalled


HEALTH_PATHS = ("/healthz", "/livez", "/readyz")


def version_body(k3s_version: str, node: str) -> dict:
    match = re.match(r"v?(\d+)\.(\d+)", k3s_version or "")
    major, minor = (match.group(1), match.group(2)) if match else ("", "")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": k3s_version,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "gc",
        "platform": "linux/amd64",
        "twinNode": node,
    }


def make_handler(node: str, k3s_version: str, log):
    class Handler(LoggingHandler):
        server_version = "twin-apiserver"
        log_file = log

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Served-By", node)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path in HEALTH_PATHS:
                self._send(200, b"ok", "text/plain; charset=utf-8")
            elif path == "/version":
                body = json.dumps(version_body(k3s_version, node), indent=2).encode()
                self._send(200, body, "application/json")
            else:
                status = {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "code": 404,
                    "message": f"the twin's stand-in apiserver on {node} serves only /healthz and /version",
                }
                self._send(404, json.dumps(status).encode(), "application/json")

    return Handler


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bind", required=True, help="the node's IP")
    ap.add_argument("--port", type=int, default=6443)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--k3s-version", default="")
    ap.add_argument("--log", default="-", help="log file ('-' for stderr)")
    args = ap.parse_args(argv)
    log = open_log(args.log)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server = Server((args.bind, args.port), make_handler(args.node, args.k3s_version, log))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return serve_until_signalled(
        server,
        log,
        f"stand-in apiserver for {args.node} on https://{args.bind}:{args.port} (k3s {args.k3s_version or '?'})",
    )


if __name__ == "__main__":
    sys.exit(main())
