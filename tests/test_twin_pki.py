"""The lab PKI: node certificates carry exactly the node's rendered tls-san; a second run changes nothing."""
from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from test_twin_support import edit_docs, rendered_files, write_rendered

from generators.pki import cert_sans, ensure_ca, ensure_node_cert
from generators.twin import plan_twin


def test_node_cert_sans_equal_tls_san_exactly(tmp_path):
    files = rendered_files()
    plan = plan_twin(write_rendered(files, tmp_path / "r"))
    for name, node in plan.nodes.items():
        tls_san = yaml.safe_load(files[f"k3s/{name}/config.yaml"])["tls-san"]
        out = node.files(tmp_path / "pki")
        cert = x509.load_pem_x509_certificate(out["/etc/twin/pki/apiserver.crt"])
        ips, dns = cert_sans(cert)
        assert ips == {s for s in tls_san if s[0].isdigit()}
        assert dns == {s for s in tls_san if not s[0].isdigit()}
        assert sorted(ips | dns) == sorted(tls_san)
        ca = x509.load_pem_x509_certificate(out["/etc/twin/pki/ca.crt"])
        cert.verify_directly_issued_by(ca)


def test_changed_tls_san_reissues_only_that_cert(tmp_path):
    files = rendered_files()
    pki = tmp_path / "pki"
    for node in plan_twin(write_rendered(files, tmp_path / "a")).nodes.values():
        node.files(pki)
    before = {p.name: p.read_bytes() for p in pki.iterdir()}
    changed = edit_docs(files, "k3s/cat02/config.yaml", lambda d: d[0]["tls-san"].append("api.example.test"))
    for node in plan_twin(write_rendered(changed, tmp_path / "b")).nodes.values():
        node.files(pki)
    after = {p.name: p.read_bytes() for p in pki.iterdir()}
    assert {n for n in after if after[n] != before.get(n)} == {"cat02-apiserver.crt", "cat02-apiserver.key"}
    assert "api.example.test" in cert_sans(x509.load_pem_x509_certificate(after["cat02-apiserver.crt"]))[1]


def test_second_run_changes_nothing(tmp_path):
    pki = tmp_path / "pki"
    ensure_node_cert(pki, "n1", ["10.0.0.1", "n1.example.test"])
    first = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in pki.iterdir()}
    ensure_ca(pki)
    ensure_node_cert(pki, "n1", ["n1.example.test", "10.0.0.1"])  # same set, other order
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in pki.iterdir()} == first
    assert (pki / "ca.key").stat().st_mode & 0o777 == 0o600


def test_standin_apiserver_serves_tls_verified_by_the_lab_ca(tmp_path):
    """Runs the stand-in on 127.0.0.1 (never a lab address) and checks TLS, /healthz and /version."""
    cert = ensure_node_cert(tmp_path / "pki", "local", ["127.0.0.1", "localhost"])
    script = Path(__file__).resolve().parent.parent / "generators" / "in_container" / "standin_apiserver.py"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "api.log"
    proc = subprocess.Popen([sys.executable, str(script), "--bind", "127.0.0.1", "--port", str(port), "--cert",
                             str(cert.cert_path), "--key", str(cert.key_path), "--node", "local",
                             "--k3s-version", "v1.35.1+k3s1", "--log", str(log)])
    try:
        ctx = ssl.create_default_context(cafile=str(cert.ca_path))
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=2)
                conn.request("GET", "/healthz")
                resp = conn.getresponse()
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"stand-in apiserver did not come up: {log.read_text() if log.exists() else ''}")
                time.sleep(0.05)
        assert (resp.status, resp.read(), resp.getheader("X-Served-By")) == (200, b"ok", "local")
        conn.request("GET", "/version")
        body = json.loads(conn.getresponse().read())
        assert body["gitVersion"] == "v1.35.1+k3s1" and body["minor"] == "35" and body["twinNode"] == "local"
        bad = ssl.create_default_context()  # system CAs: must not trust the lab CA
        with pytest.raises(ssl.SSLCertVerificationError):
            http.client.HTTPSConnection("localhost", port, context=bad, timeout=2).request("GET", "/healthz")
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    assert "GET /healthz" in log.read_text()
