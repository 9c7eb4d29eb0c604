"""generators.cluster against a real kube-apiserver + etcd on 127.0.0.1 (and the pure parts without one).

The apiserver tests are ``e2e``: they start etcd and kube-apiserver (binaries from :func:`_binary`) on free
loopback ports with a throw-away CA, serving certificate (SANs 127.0.0.1, 127.0.0.2, localhost) and static
token, and stop them by pid afterwards. Nothing but loopback is contacted.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from generators.cluster.apply import (
    FIELD_MANAGER,
    NotYet,
    apply_documents,
    changed_paths,
    delete_documents,
    get_object,
    list_objects,
    parse_conflicts,
    wait_until,
)
from generators.cluster.client import (
    ClusterAuthFailed,
    ClusterTarget,
    ClusterUnreachable,
    api_client,
    request,
    server_version,
)
from generators.errors import EXIT_ENVIRONMENT, CheckFailed, EnvironmentProblem, InputError
from generators.lab.tunnel import ExecTunnel
from generators.pki import ensure_ca, ensure_node_cert

ROOT = Path(__file__).resolve().parent.parent
RELAY = ROOT / "generators" / "in_container" / "relay.py"
SANS = ["127.0.0.1", "127.0.0.2", "localhost"]


def _binary(name: str) -> Path:
    """A binary the tests run: $K3S_BGP_LAB_BIN_<NAME>, else the helper's build in /tmp/gohelper-out."""
    env = "K3S_BGP_LAB_BIN_" + name.upper().replace("-", "_")
    if os.environ.get(env):
        return Path(os.environ[env])
    built = Path("/tmp/gohelper-out") / name
    if built.is_file():
        return built
    pytest.fail(f"no {name} binary: set {env} to its path, or build it into /tmp/gohelper-out/{name}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Apiserver:
    url: str
    port: int
    ca: Path
    token: Path
    pki: Path

    def target(self, **kw) -> ClusterTarget:
        return ClusterTarget(server=kw.pop("server", self.url), ca_file=kw.pop("ca_file", self.ca),
                             token_file=kw.pop("token_file", self.token), **kw)


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, 15)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, 9)
            proc.wait()


def _alive(proc: subprocess.Popen, log: Path, what: str) -> None:
    if proc.poll() is not None:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        pytest.fail(f"{what} exited with {proc.returncode} while starting:\n" + "\n".join(tail))


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory) -> Iterator[Apiserver]:
    work = tmp_path_factory.mktemp("apiserver")
    pki = work / "pki"
    ensure_ca(pki)
    serving = ensure_node_cert(pki, "loopback", SANS)
    sa = ec.generate_private_key(ec.SECP256R1())
    (pki / "sa.key").write_bytes(sa.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    (pki / "sa.pub").write_bytes(sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    token = secrets.token_urlsafe(24)
    (pki / "token").write_text(token + "\n")
    (pki / "tokens.csv").write_text(f'{token},lab-admin,lab-admin-uid,"system:masters"\n')
    for p in ("token", "tokens.csv", "sa.key"):
        (pki / p).chmod(0o600)

    etcd_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    etcd_log, api_log = work / "etcd.log", work / "kube-apiserver.log"
    etcd = _start([
        str(_binary("etcd")), "--name", "t", "--data-dir", str(work / "etcd"),
        "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
        "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-cluster", f"t=http://127.0.0.1:{peer_port}", "--log-level", "warn",
    ], etcd_log)
    api = None
    try:
        etcd_client = api_client(ClusterTarget(server=etcd_url, timeout=2))

        def etcd_healthy() -> bool | NotYet:
            _alive(etcd, etcd_log, "etcd")
            status, body = request(etcd_client, "GET", "/health")
            return True if status == 200 else NotYet(f"{status} {body}")

        wait_until(etcd_healthy, 30, 0.1, "etcd /health")
        api = _start([
            str(_binary("kube-apiserver")), f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", f"--secure-port={api_port}", "--advertise-address=127.0.0.1",
            f"--tls-cert-file={serving.cert_path}", f"--tls-private-key-file={serving.key_path}",
            f"--client-ca-file={serving.ca_path}", f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=RBAC", "--anonymous-auth=false",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=172.30.0.0/16", "--endpoint-reconciler-type=none",
            f"--cert-dir={work / 'certs'}", "--profiling=false", "--enable-priority-and-fairness=false",
        ], api_log)
        server = Apiserver(f"https://127.0.0.1:{api_port}", api_port, serving.ca_path, pki / "token", pki)
        client = api_client(server.target(timeout=2))

        def ready() -> bool | NotYet:
            _alive(api, api_log, "kube-apiserver")
            status, body = request(client, "GET", "/readyz")
            return True if status == 200 else NotYet(f"/readyz {status}: {body.get('message', body)}")

        wait_until(ready, 90, 0.2, "kube-apiserver /readyz")
        yield server
    finally:
        if api is not None:
            _stop(api)
        _stop(etcd)


@pytest.fixture()
def client(apiserver):
    return api_client(apiserver.target())


def _cm(name: str, data: dict[str, str], namespace: str = "default") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": data}


def _live_data(client, name: str) -> dict:
    obj = get_object(client, "v1", "ConfigMap", name, "default")
    assert obj is not None
    return obj["data"]


# --------------------------------------------------------------------------------------- real apiserver
@pytest.mark.e2e
def test_create_then_the_same_again_is_unchanged(client):
    [first] = apply_documents(client, [_cm("cm-create", {"a": "1"})])
    assert (first.action, first.kind, first.namespace, first.name) == ("created", "ConfigMap", "default", "cm-create")
    assert first.fields == ["data.a"]
    assert first.object is not None and first.object["metadata"]["uid"]
    [again] = apply_documents(client, [_cm("cm-create", {"a": "1"})])
    assert (again.action, again.fields) == ("unchanged", [])


@pytest.mark.e2e
def test_a_changed_field_is_named_by_its_path(client):
    def slice_(n: int) -> dict:
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "api-bgp", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "api-bgp"}},
                "addressType": "IPv4", "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
                "endpoints": [{"addresses": [f"10.31.0.{11 + i}"]} for i in range(n)]}

    assert [r.action for r in apply_documents(client, [slice_(2)])] == ["created"]
    [grown] = apply_documents(client, [slice_(3)])
    assert (grown.action, grown.fields) == ("changed", ["endpoints[2]"])
    apply_documents(client, [_cm("cm-change", {"a": "1", "b": "1"})])
    [changed] = apply_documents(client, [_cm("cm-change", {"a": "1", "b": "2"})])
    assert (changed.action, changed.fields) == ("changed", ["data.b"])


@pytest.mark.e2e
def test_dry_run_writes_nothing(client):
    [new] = apply_documents(client, [_cm("cm-dry-new", {"a": "1"})], dry_run=True)
    assert (new.action, new.dry_run) == ("created", True)
    assert get_object(client, "v1", "ConfigMap", "cm-dry-new", "default") is None
    apply_documents(client, [_cm("cm-dry", {"a": "1"})])
    [would] = apply_documents(client, [_cm("cm-dry", {"a": "2"})], dry_run=True)
    assert (would.action, would.fields) == ("changed", ["data.a"])
    assert would.object is not None and would.object["data"] == {"a": "2"}  # what the server would store
    assert _live_data(client, "cm-dry") == {"a": "1"}


@pytest.mark.e2e
def test_a_field_owned_by_another_manager_is_a_conflict_until_forced(client):
    [argo] = apply_documents(client, [_cm("cm-owned", {"owner": "argo", "x": "1"})], field_manager="argocd-controller")
    assert argo.action == "created"
    [conflict] = apply_documents(client, [_cm("cm-owned", {"owner": "lab", "x": "1"})])
    assert conflict.action == "conflict"
    assert conflict.conflicts == [("data.owner", "argocd-controller")]
    assert conflict.fields == ["data.owner"]  # what forcing would change (asked as a dry run)
    assert "data.owner is owned by argocd-controller" in conflict.render()
    assert _live_data(client, "cm-owned") == {"owner": "argo", "x": "1"}
    [dry_forced] = apply_documents(client, [_cm("cm-owned", {"owner": "lab", "x": "1"})], force_conflicts=True,
                                   dry_run=True)
    assert dry_forced.action == "changed" and _live_data(client, "cm-owned")["owner"] == "argo"
    [forced] = apply_documents(client, [_cm("cm-owned", {"owner": "lab", "x": "1"})], force_conflicts=True)
    assert (forced.action, forced.fields) == ("changed", ["data.owner"])
    assert _live_data(client, "cm-owned") == {"owner": "lab", "x": "1"}
    managers = {m["manager"] for m in get_object(client, "v1", "ConfigMap", "cm-owned", "default")["metadata"]
                ["managedFields"]}
    assert FIELD_MANAGER in managers


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "bgppeerings.lab.k3s-bgp-lab.test"},
    "spec": {
        "group": "lab.k3s-bgp-lab.test", "scope": "Cluster",
        "names": {"plural": "bgppeerings", "singular": "bgppeering", "kind": "BGPPeering",
                  "listKind": "BGPPeeringList"},
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
            "type": "object", "properties": {"spec": {"type": "object", "properties": {
                "peerASN": {"type": "integer"},
                "timers": {"type": "object", "properties": {"holdTimeSeconds": {"type": "integer"},
                                                            "keepAliveTimeSeconds": {"type": "integer"}}}}}}}}}],
    },
}


def _peering(hold: int) -> dict:
    return {"apiVersion": "lab.k3s-bgp-lab.test/v1", "kind": "BGPPeering", "metadata": {"name": "tor"},
            "spec": {"peerASN": 64512, "timers": {"holdTimeSeconds": hold, "keepAliveTimeSeconds": 3}}}


@pytest.mark.e2e
def test_a_crd_and_its_custom_resource_in_one_call_then_delete(client):
    # the CR comes first on purpose: CRDs are applied first, and the CR waits until its kind is served
    dry = apply_documents(client, [_peering(9), CRD], dry_run=True)
    assert [r.action for r in dry] == ["created", "created"]
    assert "its CRD bgppeerings.lab.k3s-bgp-lab.test is created by this apply" in dry[0].note
    assert get_object(client, *CRD_REF) is None

    results = apply_documents(client, [_peering(9), CRD])
    assert [(r.kind, r.action) for r in results] == [("BGPPeering", "created"), ("CustomResourceDefinition", "created")]
    assert results[0].namespace == "" and results[0].object["spec"]["timers"]["holdTimeSeconds"] == 9
    [changed] = apply_documents(client, [_peering(30)])
    assert (changed.action, changed.fields) == ("changed", ["spec.timers.holdTimeSeconds"])
    assert [o["metadata"]["name"] for o in list_objects(client, "lab.k3s-bgp-lab.test/v1", "BGPPeering")] == ["tor"]

    refs = [("lab.k3s-bgp-lab.test/v1", "BGPPeering", None, "tor"), ("v1", "ConfigMap", "default", "cm-create"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, CRD["metadata"]["name"])]
    dry_del = delete_documents(client, refs, dry_run=True)
    assert [r.action for r in dry_del] == ["deleted", "deleted", "deleted"]
    assert get_object(client, "lab.k3s-bgp-lab.test/v1", "BGPPeering", "tor") is not None
    assert "deletionTimestamp" not in get_object(client, *CRD_REF)["metadata"]  # a dry run starts no deletion
    gone = delete_documents(client, refs, wait_timeout=30)
    assert [r.action for r in gone] == ["deleted", "deleted", "deleted"]
    assert get_object(client, *CRD_REF) is None
    assert get_object(client, "v1", "ConfigMap", "cm-create", "default") is None
    again = delete_documents(client, refs)
    assert [r.action for r in again] == ["absent", "absent", "absent"]


CRD_REF = ("apiextensions.k8s.io/v1", "CustomResourceDefinition", CRD["metadata"]["name"])


@pytest.mark.e2e
def test_bad_documents_are_input_errors(client):
    with pytest.raises(InputError, match="serves no kind Nonsense in apiVersion v1"):
        apply_documents(client, [{"apiVersion": "v1", "kind": "Nonsense", "metadata": {"name": "x"}}])
    with pytest.raises(InputError, match="namespace nowhere does not exist"):
        apply_documents(client, [_cm("cm", {"a": "1"}, namespace="nowhere")])
    with pytest.raises(InputError, match="rejected it"):
        apply_documents(client, [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Not_A_Name"}}])
    with pytest.raises(InputError, match="has no kind, metadata.name"):
        apply_documents(client, [{"apiVersion": "v1"}])


@pytest.mark.e2e
def test_kubeconfig_with_and_without_a_server_override(apiserver, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: lab, cluster: {{server: "https://localhost:1", certificate-authority: "{apiserver.ca}"}}}},
           {{name: real, cluster: {{server: "{apiserver.url}", certificate-authority: "{apiserver.ca}"}}}}]
users: [{{name: admin, user: {{tokenFile: "{apiserver.token}"}}}}]
contexts: [{{name: broken, context: {{cluster: lab, user: admin}}}},
           {{name: ok, context: {{cluster: real, user: admin}}}}]
current-context: broken
""")
    via_context = api_client(ClusterTarget(server="", kubeconfig=kubeconfig, context="ok"))
    assert server_version(via_context)["major"] == "1"
    overridden = api_client(ClusterTarget(server=f"https://localhost:{apiserver.port}", kubeconfig=kubeconfig))
    assert server_version(overridden)["major"] == "1"
    with pytest.raises(InputError, match="context 'nope'"):
        api_client(ClusterTarget(server="", kubeconfig=kubeconfig, context="nope"))


@pytest.mark.e2e
def test_wrong_credentials_and_wrong_ca_are_environment_problems(apiserver, tmp_path):
    bad_token = tmp_path / "token"
    bad_token.write_text("not-the-token\n")
    with pytest.raises(ClusterAuthFailed, match="rejected the credentials") as err:
        server_version(api_client(apiserver.target(token_file=bad_token)))
    assert err.value.exit_code == EXIT_ENVIRONMENT and "not-the-token" not in str(err.value)
    other_ca, _ = ensure_ca(tmp_path / "other")
    with pytest.raises(ClusterUnreachable, match="TLS to the API server at https://127.0.0.1"):
        server_version(api_client(apiserver.target(ca_file=tmp_path / "other" / "ca.crt")))
    assert other_ca is not None


def _relay_to_loopback(host: str, port: int) -> list[str]:
    """The lab's argv_for, with the container replaced by this machine and every host by 127.0.0.1."""
    return [sys.executable, str(RELAY), "127.0.0.1", str(port)]


@pytest.mark.e2e
def test_through_the_exec_tunnel_tls_is_verified_against_the_host_in_server(apiserver, monkeypatch):
    # the environment's proxy settings are ignored: only ClusterTarget.proxy counts
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.2,127.0.0.3")
    with ExecTunnel(_relay_to_loopback) as tunnel:
        # 127.0.0.2 stands for a lab address: nothing listens there, the relay reaches 127.0.0.1
        lab = api_client(apiserver.target(server=f"https://127.0.0.2:{apiserver.port}", proxy=tunnel.url))
        assert server_version(lab)["major"] == "1"
        assert tunnel.connects == [("127.0.0.2", apiserver.port)]  # the client issued CONNECT for that host
        [r] = apply_documents(lab, [_cm("cm-tunnel", {"via": "tunnel"})])
        assert r.action in ("created", "unchanged")
        # a host the certificate does not name fails verification, through the tunnel as without it
        wrong = api_client(apiserver.target(server=f"https://127.0.0.3:{apiserver.port}", proxy=tunnel.url))
        with pytest.raises(ClusterUnreachable, match="TLS to the API server at https://127.0.0.3") as err:
            server_version(wrong)
        assert "127.0.0.3" in str(err.value) and ("match" in str(err.value) or "mismatch" in str(err.value))
        assert ("127.0.0.3", apiserver.port) in tunnel.connects
    # and without the tunnel that address leads nowhere: the tunnel was the only way
    with pytest.raises(ClusterUnreachable, match="cannot reach the API server at https://127.0.0.2"):
        server_version(api_client(apiserver.target(server=f"https://127.0.0.2:{apiserver.port}", timeout=2)))


@pytest.mark.e2e
def test_an_unreachable_server_fails_within_the_timeout(apiserver):
    refused = f"https://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    with pytest.raises(EnvironmentProblem, match=f"cannot reach the API server at {refused}"):
        apply_documents(api_client(apiserver.target(server=refused, timeout=2)), [_cm("x", {})])
    assert time.monotonic() - t0 < 2
    with socket.socket() as silent:  # accepts connections (the kernel does) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        mute = f"https://127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.monotonic()
        with pytest.raises(EnvironmentProblem, match=f"cannot reach the API server at {mute}.*within 1s"):
            server_version(api_client(apiserver.target(server=mute, timeout=1)))
        assert time.monotonic() - t0 < 3


# ------------------------------------------------------------------------------------ no apiserver needed
def test_changed_paths():
    assert changed_paths({"a": 1}, {"a": 1}) == []
    assert changed_paths({"spec": {"timers": {"holdTimeSeconds": 9}}},
                         {"spec": {"timers": {"holdTimeSeconds": 30}}}) == ["spec.timers.holdTimeSeconds"]
    assert changed_paths({"endpoints": [1, 2]}, {"endpoints": [1, 2, 3]}) == ["endpoints[2]"]
    assert changed_paths({"l": [{"a": 1}]}, {"l": [{"a": 2}]}) == ["l[0].a"]
    assert changed_paths({}, {"spec": {"x": 1, "y": {"z": 2}}}) == ["spec.x", "spec.y.z"]
    assert changed_paths({"metadata": {"labels": {"kubernetes.io/hostname": "n1"}}},
                         {"metadata": {"labels": {"kubernetes.io/hostname": "n2"}}}) == [
        'metadata.labels["kubernetes.io/hostname"]']


def test_parse_conflicts_reads_the_409_causes():
    status = {"kind": "Status", "code": 409, "reason": "Conflict", "details": {"causes": [
        {"reason": "FieldManagerConflict", "message": 'conflict with "argocd-controller" using v1', "field": ".data.x"},
        {"reason": "FieldManagerConflict", "message": 'conflict with "helm" with subresource "status" using v1',
         "field": ".spec.ports[port=80,protocol=\"TCP\"].targetPort"},
        {"reason": "Other", "message": "ignored"}]}}
    assert parse_conflicts(status) == [("data.x", "argocd-controller"),
                                       ('spec.ports[port=80,protocol="TCP"].targetPort', "helm")]


def test_wait_until_returns_the_value_or_names_what_and_the_last_state():
    seen = iter([None, NotYet("phase=Pending"), "done"])
    assert wait_until(lambda: next(seen), 5, 0.01, "x") == "done"
    with pytest.raises(CheckFailed, match=r"waiting for the CRD to be established; last observed: phase=Pending"):
        wait_until(lambda: NotYet("phase=Pending"), 0.1, 0.02, "the CRD to be established")

    def boom():
        raise ClusterUnreachable("cannot reach the API server at https://10.31.0.10:6443")

    with pytest.raises(CheckFailed, match="last observed: ClusterUnreachable: cannot reach"):
        wait_until(boom, 0.05, 0.01, "the apiserver")

    calls = []

    def bad_input():
        calls.append(1)
        raise InputError("no such file")

    with pytest.raises(InputError):  # never "not yet": it cannot get better by waiting
        wait_until(bad_input, 5, 0.01, "x")
    assert calls == [1]


def test_targets_are_checked_before_anything_is_contacted(tmp_path):
    with pytest.raises(InputError, match="not a https://HOST:PORT or http://HOST:PORT URL"):
        api_client(ClusterTarget(server="10.31.0.10:6443"))
    with pytest.raises(InputError, match="no CA file given"):
        api_client(ClusterTarget(server="https://10.31.0.10:6443"))
    with pytest.raises(InputError, match="proxy 'socks5://x:1'"):
        api_client(ClusterTarget(server="http://127.0.0.1:1", proxy="socks5://x:1"))
    with pytest.raises(InputError, match="used for https:// servers only"):
        api_client(ClusterTarget(server="http://127.0.0.1:1", proxy="http://127.0.0.1:2"))
    with pytest.raises(InputError, match="token file .*cannot read it"):
        api_client(ClusterTarget(server="http://127.0.0.1:1", token_file=tmp_path / "missing"))
