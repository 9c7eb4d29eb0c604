"""The in-lab agents, exercised without a lab.

The probe runs for real against throw-away TLS/HTTP servers on 127.0.0.1 (loopback of the test
process, never a lab address); the sampler's parsing runs on synthetic FRR/iproute2 output shaped
like FRR 8.4.4's (tests/fixtures/drill/README.md).
"""
from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import socketserver
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from generators.drill.samples import parse_control, parse_probe
from generators.in_container import probe_agent, sampler_agent
from generators.readback import frrstate

DRILL = Path(__file__).parent / "fixtures" / "drill"
DNS = "kube.drill.test"


# ---------------------------------------------------------------- throw-away servers

def _cert(tmp: Path) -> tuple[Path, Path, Path]:
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "drill test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(minutes=1))
          .not_valid_after(now + datetime.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DNS)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(DNS),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(handler_fn, tls: ssl.SSLContext | None = None):
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            sock = self.request
            if tls is not None:
                try:
                    sock = tls.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError):
                    return
            handler_fn(sock)

    srv = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _read_request(sock) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1024)
        if not chunk:
            return
        data += chunk


def apiserver_handler(sock):
    _read_request(sock)
    sock.sendall(b"HTTP/1.1 200 OK\r\nX-Served-By: cat02\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    sock.close()


def traefik_body_handler(sock):
    _read_request(sock)
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nserved-by: cat03\n")
    sock.close()


def hanging_handler(sock):
    _read_request(sock)
    threading.Event().wait(3)  # never answers within the probe's timeout


@pytest.fixture()
def pki(tmp_path):
    ca, cert, key = _cert(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ca, ctx


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_probe(tmp_path, **kw) -> tuple[list[dict], dict]:
    out, status = tmp_path / "probe.jsonl", tmp_path / "status.json"
    argv = ["--out", str(out), "--status", str(status), "--rate", str(kw.pop("rate", 20)),
            "--timeout", str(kw.pop("timeout", 0.5)), "--max-duration", str(kw.pop("duration", 1.0))]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    assert probe_agent.run(probe_agent.parse_args(argv)) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    return lines, json.loads(status.read_text())


# ---------------------------------------------------------------- probe

def test_probe_tls_and_http_on_a_fixed_schedule(tmp_path, pki):
    ca, tls = pki
    api, web = serve(apiserver_handler, tls), serve(traefik_body_handler)
    try:
        lines, status = run_probe(tmp_path, apiserver_vip="127.0.0.1", apiserver_port=api.server_address[1],
                                  dns_name=DNS, ca=ca, traefik_vip="127.0.0.1", traefik_port=web.server_address[1])
    finally:
        api.shutdown(), web.shutdown()
    meta, end = lines[0], lines[-1]
    assert meta["type"] == "meta" and meta["rate"] == 20 and end == {**end, "type": "end", "reason": "max-duration"}
    run = parse_probe("\n".join(json.dumps(x) for x in lines))
    for vip, node in (("apiserver", "cat02"), ("traefik", "cat03")):
        attempts = sorted(run.of(vip), key=lambda a: a.k)
        assert [a.k for a in attempts] == list(range(20))
        assert all(a.outcome == "ok" and a.node == node for a in attempts), attempts[:3]
        for a in attempts:  # attempt k is scheduled at t0 + k / rate
            assert a.t_sched == pytest.approx(run.t0 + a.k / 20, abs=1e-6)
            assert 0 <= a.t_start - a.t_sched < 0.05
    assert status["done"] and status["counts"]["apiserver"] == {"ok": 20, "failed": 0}
    assert set(status["last_ok_by_node"]["traefik"]) == {"cat03"}


def test_probe_failures_are_classified_and_do_not_slow_the_schedule(tmp_path, pki):
    ca, tls = pki
    api, hang = serve(apiserver_handler, tls), serve(hanging_handler)
    try:
        lines, status = run_probe(tmp_path, apiserver_vip="127.0.0.1", apiserver_port=api.server_address[1],
                                  dns_name="wrong.name.test", ca=ca, traefik_vip="127.0.0.1",
                                  traefik_port=hang.server_address[1], timeout=0.3)
    finally:
        api.shutdown(), hang.shutdown()
    run = parse_probe("\n".join(json.dumps(x) for x in lines))
    assert {a.outcome for a in run.of("apiserver")} == {"tls-verify"}
    hung = run.of("traefik")
    assert {a.outcome for a in hung} == {"read-timeout"} and len(hung) == 20
    assert all(0.25 <= a.latency <= 0.45 for a in hung)
    assert all(a.t_start - a.t_sched < 0.05 for a in hung)  # each attempt started on time despite the hangs
    assert status["counts"]["traefik"]["failed"] == 20


def test_probe_refused_and_stop_file(tmp_path):
    stop = tmp_path / "stop"
    # first: a closed port is "refused"
    lines, _ = run_probe(tmp_path, traefik_vip="127.0.0.1", traefik_port=closed_port(), duration=0.5, rate=10)
    assert {x["outcome"] for x in lines if x["type"] == "attempt"} == {"refused"}
    # then: an existing stop file ends the probe at once, whatever --max-duration says
    stop.write_text("")
    (tmp_path / "probe.jsonl").unlink()
    lines, _ = run_probe(tmp_path, traefik_vip="127.0.0.1", traefik_port=closed_port(), duration=600,
                         stop_file=stop)
    assert lines[-1]["reason"] == "stop-file" and lines[-1]["attempts_per_vip"] == 0


def test_parse_response_and_served_by():
    status, headers, body = probe_agent.parse_response(b"HTTP/1.1 503 Nope\r\nX-Served-By: cat01\r\n\r\nbody")
    assert (status, probe_agent.served_by(headers, body)) == (503, "cat01")
    with pytest.raises(probe_agent.AttemptError, match="http-incomplete"):
        probe_agent.parse_response(b"HTTP/1.1 200 OK\r\nX-Served")


# ---------------------------------------------------------------- sampler

def test_sampler_sample_from_vtysh_and_ip_output():
    vtysh = (DRILL / "vtysh-sample-stale.txt").read_text()
    routes = json.loads((DRILL / "ip-route.json").read_text())
    nh = frrstate.nexthop_objects(json.loads((DRILL / "ip-nexthop.json").read_text()))
    vips = {"apiserver": "10.31.0.80", "traefik": "10.31.0.81"}
    sample = sampler_agent.build_sample(vips, vtysh, routes, nh)
    assert "errors" in sample and sample["errors"] == []
    assert sample["peers"]["10.31.0.218"]["state"] == "Active"
    api = sample["vips"]["apiserver"]
    assert api["fib"] == ["10.31.0.132", "10.31.0.161", "10.31.0.218"]  # multipath route
    assert sample["vips"]["traefik"]["fib"] == ["10.31.0.132", "10.31.0.161"]  # only a nexthop-group id
    stale = [p for p in api["bgp"] if p["stale"]]
    assert [p["nexthop"] for p in stale] == ["10.31.0.218"]
    assert {n["ip"] for n in api["rib"] if n["fib"]} == {"10.31.0.132", "10.31.0.161", "10.31.0.218"}
    # the host side reads the same sample back
    sample.update({"type": "sample", "t": 5.0})
    run = parse_control("\n".join([json.dumps({"type": "meta", "t0": 0.0, "interval": 0.2}), json.dumps(sample)]))
    state = run.samples[0].vips["apiserver"]
    assert state.stale_nexthops == {"10.31.0.218"} and len(state.bgp_nexthops) == 3


def test_sampler_missing_prefix_is_empty_not_shifted():
    out = '{"ipv4Unicast": {"peers": {}}}\n{}\n{}\n' + json.dumps(
        {"prefix": "10.31.0.81/32", "paths": [{"valid": True, "nexthops": [{"ip": "10.31.0.161"}],
                                              "peer": {"peerId": "10.31.0.161"}}]}) + "\n{}\n"
    sample = sampler_agent.build_sample({"apiserver": "10.31.0.80", "traefik": "10.31.0.81"}, out, [], {})
    assert sample["vips"]["apiserver"]["bgp"] == []
    assert [p["nexthop"] for p in sample["vips"]["traefik"]["bgp"]] == ["10.31.0.161"]


def test_vtysh_commands_cover_every_vip():
    cmds = sampler_agent.vtysh_commands({"apiserver": "10.31.0.80"})
    assert cmds == ["show bgp summary json", "show bgp ipv4 unicast 10.31.0.80/32 json",
                    "show ip route 10.31.0.80/32 json"]


def test_sampler_without_vtysh_output_keeps_the_fib_and_marks_bgp_unknown():
    routes = json.loads((DRILL / "ip-route.json").read_text())
    sample = sampler_agent.build_sample({"apiserver": "10.31.0.80"}, "% Can't connect to bgpd\n", routes, {})
    assert sample["errors"] and sample["vips"]["apiserver"]["bgp"] is None
    sample.update({"type": "sample", "t": 1.0})
    run = parse_control(json.dumps({"type": "meta", "t0": 0.0, "interval": 0.2}) + "\n" + json.dumps(sample))
    s = run.samples[0]
    assert not s.frr_ok and len(s.vips["apiserver"].fib_nexthops) == 3 and s.vips["apiserver"].bgp_nexthops == set()
