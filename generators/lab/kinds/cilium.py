"""Cilium-fidelity cluster nodes: a real Kubernetes control plane and Cilium's own code on every node.

Every node of the inventory runs, from the lab's offline Go builds (``generators.gobuild``):

- an etcd member (an HA trio with three nodes, peers on the node segment) and a kube-apiserver bound to
  the node's address, whose serving certificate holds exactly the node's rendered ``tls-san``;
- ``cilium-bgp-host``: Cilium 1.19.3's BGP control plane, load-balancer tables and CiliumEnvoyConfig
  controller for this node (GoBGP inside it speaks to the gateway);
- HAProxy standing in for cilium-envoy, configured from what Cilium's code pushed to this node's Envoy
  (listeners, clusters, per-node endpoints), and the Traefik stand-in.

One Cilium operator runs (``operator.replicas`` of the rendered values, on the first nodes). The lab does
what k3s and the Cilium agent would do but nobody runs here: it registers each Node and CiliumNode with the
labels and address k3s would give them, installs Cilium's CRDs from Cilium's source, and writes the
EndpointSlice of the Traefik DaemonSet (no controller manager runs). Everything else is applied from the
rendered files by server-side apply, through the client container (``generators.lab.tunnel``).
"""
from __future__ import annotations

import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import yaml
from kubernetes import client as k8s

from ... import FIELD_MANAGER, gobuild, pki
from ...cluster.apply import NotYet, apply_documents, delete_documents, get_object, wait_until
from ...errors import LabError, LabToolError
from ...gomod import download
from ...in_container import DIR as IN_CONTAINER
from ...model import Model
from ...readback.cilium import Listener
from ...readback.ciliumstate import NodeState, parse_state
from ...readback.k3s import K3sNode, read_node, read_nodes
from ...readback.rendered import Rendered, load_rendered
from ...readback.selectors import SelectorError, selector_matches
from ...readback.services import SERVICE_NAME_LABEL, TRAEFIK_SOURCE, Service, read_services
from ...readback.values import cilium_chart_values
from ...twin.envoy import Backend, Frontend
from ...twin.haproxy import render_haproxy
from ..images import IDLE_CHANGES, ExtraFile, ImageSpec
from . import sshd
from .base import ClusterKind, NodeAccess, linux_node, put_changed, run_checked

PACKAGES = ("tini", "haproxy", "python3", "iproute2", "iptables", "procps", "iputils-ping", "openssl", "curl",
            "openssh-server")
BINARIES = ("etcd", "kube-apiserver", "cilium-operator-generic", "cilium-bgp-host")
LAB_BIN = "/opt/lab"
ETC = "/etc/lab"
PKI_DIR = f"{ETC}/pki"
KUBECONFIG = f"{ETC}/kubeconfig"
TOKENS = f"{ETC}/pki/tokens.csv"
OPERATOR_CONFIG = f"{ETC}/operator"
HAPROXY_CFG = f"{ETC}/haproxy.cfg"
LOG_DIR = "/var/log/twin"  # twinrun.py's (the process supervisor both cluster kinds use)
RUN_DIR = "/run/twin"
STATUS_ADDR = "127.0.0.1:9235"
ETCD_CLIENT = "127.0.0.1:2379"
SERVICE_CIDR = "10.43.0.0/16"  # k3s's default service-cidr
APISERVER_PORT = 6443
SCRIPTS = ("twinrun.py", "standin_common.py", "standin_traefik.py")
# what the lab writes for Helm and the controller manager (the Traefik chart's Service, its DaemonSet's
# EndpointSlice) is applied under its own field manager: the rollout's manager never owns it
STANDIN_MANAGER = f"{FIELD_MANAGER}-standin"
ADMIN_TOKEN = "admin.token"  # in the lab's pki directory on the host
K3S_TOKEN = "k3s-server.token"  # the cluster's join token (what k3s makes on its first server), on the host
K3S_CONFIG = "/etc/rancher/k3s/config.yaml"  # what k3s reads at start: the rendered k3s/<node>/config.yaml
K3S_SERVER_TOKEN = "/var/lib/rancher/k3s/server/token"  # where k3s keeps the token on a server
ETCD_DATA = "/var/lib/etcd"
SA_KEY = "service-account"
CRD_DIRS = ("pkg/k8s/apis/cilium.io/client/crds/v2", "pkg/k8s/apis/cilium.io/client/crds/v2alpha1")
LOG_FILES = [f"{LOG_DIR}/{n}.log" for n in ("etcd", "kube-apiserver", "cilium-bgp-host", "cilium-operator",
                                            "haproxy")]


def cilium_spec() -> ImageSpec:
    found = gobuild.binary_identities(list(BINARIES))
    files = tuple(ExtraFile(f"/usr/local/bin/{name}", path, identity=identity)
                  for name, (path, identity) in found.items())
    pins = gobuild.Pins.read()
    return ImageSpec(name="cilium", suite="bookworm", packages=PACKAGES, extra_files=files, changes=IDLE_CHANGES,
                     note=f"Cilium {pins.cilium} node: kube-apiserver {pins.kubernetes}, etcd {pins.etcd}, Cilium's "
                          "operator and BGP control plane; haproxy for cilium-envoy, python3 stand-ins")


class KubeAccess(NodeAccess, Protocol):
    """A NodeAccess that can also open the lab's Kubernetes API (through the client container)."""

    def kube(self, server: str) -> AbstractContextManager[Any]: ...


@dataclass(frozen=True)
class LabCluster:
    """What the Cilium kind reads from the rendered files (not the inventory: hand-written files work too)."""

    rendered: Rendered
    nodes: list[K3sNode]
    services: list[Service]
    operator_replicas: int

    @classmethod
    def read(cls, root: Path) -> "LabCluster":
        rendered = load_rendered(root)
        nodes, problems = read_nodes(rendered)
        missing = [n.name for n in nodes if not n.ip]
        if problems or missing:
            raise LabError("the rendered k3s configs do not describe the lab's nodes",
                           problems + [f"{n}: no node-ip" for n in missing])
        services, _ = read_services(rendered, nodes)
        replicas = ((rendered.cilium_values.get("operator") or {}).get("replicas")) or 1
        return cls(rendered, nodes, services, int(replicas))


def _python(*argv: str) -> list[str]:
    return ["python3", *argv]


def _twinrun(name: str, argv: list[str], ready: str | None = None, timeout: float = 60) -> list[str]:
    cmd = _python(f"{LAB_BIN}/twinrun.py", "start", name)
    if ready:
        cmd += ["--ready-tcp", ready, "--timeout", str(int(timeout))]
    return cmd + ["--", *argv]


class CiliumKind(ClusterKind):
    fidelity = "cilium"
    graceful_stop_sends_cease = False  # the agent's stop path sends no Cease (docs/FACTS.md#graceful-restart)

    def image_spec(self, model: Model) -> ImageSpec:
        return cilium_spec()

    def prepare(self, model: Model, log: Callable[[str], None]) -> list[str]:
        """Build the Go binaries the image holds (cached by content: nothing to do the second time)."""
        gobuild.check_versions(model.k3s_version, model.cilium_version, str(model.source))
        before = {n for n, (p, _) in gobuild.binary_identities(list(BINARIES)).items() if not p.is_file()}
        gobuild.ensure_binaries(list(BINARIES), log)
        return [f"built {n}" for n in sorted(before)]

    def clab_nodes(self, model: Model, image: str) -> dict[str, dict]:
        prefix = model.subnet.prefixlen
        return {n.name: linux_node(image, [
            f"ip addr add {n.address}/{prefix} dev eth1",
            f"ip route replace default via {model.gateway.address} dev eth1",
        ], sysctls={"net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.all.arp_announce": "2"})
            for n in model.nodes}

    def log_files(self) -> list[str]:
        return LOG_FILES

    # ----------------------------------------------------------------- configure
    def configure(self, access: NodeAccess) -> list[str]:
        lab = LabCluster.read(access.paths.rendered)
        kube_access: KubeAccess = access  # type: ignore[assignment]
        changed: list[str] = []
        token = _admin_token(access.paths.pki)
        join_token = _k3s_token(access.paths.pki)
        # made here, in one thread: the lab's PKI and known_hosts are files on the host
        files = {n.name: {**_node_files(access, lab, n, token), **_k3s_files(lab, n, join_token)}
                 for n in lab.nodes}
        ssh = {n.name: sshd.sshd_files(access.paths, n.name, str(n.ip)) for n in lab.nodes}

        def node_files(node: K3sNode) -> list[str]:
            out = sshd.install_files(access, node.name, ssh[node.name])
            wrote = _put_changed(access, node.name, files[node.name])
            out += [f"{node.name}: wrote {len(wrote)} file(s)"] if wrote else []
            for proc in sorted(p for p, prefix in RESTART_ON.items() if any(w.startswith(prefix) for w in wrote)):
                run_checked(access, node.name, _python(f"{LAB_BIN}/twinrun.py", "stop", proc))
            return out

        changed += _each(lab.nodes, node_files)
        # every member must be up for the first to have a quorum: all start together, as do the apiservers
        changed += _each(lab.nodes, lambda n: _started(access, n.name, "etcd", _etcd_argv(lab, n), ETCD_CLIENT))
        changed += _each(lab.nodes, lambda n: _started(access, n.name, "kube-apiserver", _apiserver_argv(n),
                                                       f"{n.ip}:{APISERVER_PORT}"))
        first = lab.nodes[0]
        with kube_access.kube(f"https://{first.ip}:{APISERVER_PORT}") as api:
            _wait_ready(api)
            changed += _applied(api, _crds(), "Cilium CRDs")
            changed += _applied(api, _bootstrap_objects(lab), "Nodes, CiliumNodes, namespaces")
            _register_node_addresses(api, lab)
            for node in lab.nodes[: lab.operator_replicas]:
                changed += _started(access, node.name, "cilium-operator", _operator_argv())
            changed += _each(lab.nodes, lambda n: _started(access, n.name, "cilium-bgp-host", _host_argv(n),
                                                           STATUS_ADDR))
            changed += _applied(api, _rendered_objects(lab), "the rendered resources")
            changed += _applied(api, _standin_objects(lab.services), "the stand-ins' objects", STANDIN_MANAGER)
            _release(api, _standin_objects(lab.services), FIELD_MANAGER)
            held = _wait_lb_ips(api, lab, lambda: _alive(access, lab.nodes[0].name, "cilium-operator"))
        changed += _each(lab.nodes, lambda n: _data_path(access, n, _settled_state(access, n, lab, held), lab))
        return changed

    # ----------------------------------------------------------------- the rollout's lab hooks
    def restart_k3s(self, access: NodeAccess, name: str) -> list[str]:
        """What ``systemctl restart k3s`` does on a rack node, on the lab machine ``name``, from the
        ``/etc/rancher/k3s/config.yaml`` the rollout wrote there: its etcd member and apiserver restart (a new
        member joins the cluster first, with the token its token-file holds), and it is registered with the
        labels and address its config gives. Cilium's agent (cilium-bgp-host) restarts only when its own
        configuration changed; it starts when the node is new."""
        kube_access: KubeAccess = access  # type: ignore[assignment]
        text = run_checked(access, name, ["sh", "-c", f"cat {K3S_CONFIG}"])
        try:
            config = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise LabError(f"{name}: k3s would not start: {K3S_CONFIG} is not YAML ({exc})") from None
        if not isinstance(config, dict):
            raise LabError(f"{name}: k3s would not start: {K3S_CONFIG} is not a mapping")
        node = read_node(name, config)
        if not node.ip:
            raise LabError(f"{name}: k3s would not start here: {K3S_CONFIG} gives no node-ip")
        lab = LabCluster.read(access.paths.rendered)
        changed: list[str] = []
        cluster_token = _k3s_token(access.paths.pki)
        if config.get("server") and not node.cluster_init:
            token_file = str(config.get("token-file") or "")
            held = access.exec(name, ["cat", token_file]).stdout.strip() if token_file else ""
            if held != cluster_token:
                raise LabError(f"{name}: k3s would not join {config['server']}: "
                               + (f"its token-file {token_file} does not hold the cluster's token" if token_file
                                  else "its config has no token-file"))
        files = _node_files(access, lab, node, _admin_token(access.paths.pki))
        wrote = _put_changed(access, name, files)
        members = _etcd_members(access, [n for n in lab.nodes if n.name != name])
        new_member = access.exec(name, ["test", "-d", f"{ETCD_DATA}/member"]).exit_code != 0
        for proc in ("kube-apiserver", "etcd"):
            run_checked(access, name, _python(f"{LAB_BIN}/twinrun.py", "stop", proc))
        if new_member:
            peers = _etcd_join(access, members, node)
            changed.append(f"{name}: etcd member added ({len(peers)} members)")
            argv = _etcd_argv(lab, node, peers=peers, state="existing")
        else:
            argv = _etcd_argv(lab, node)
        changed += _started(access, name, "etcd", argv, ETCD_CLIENT)
        changed += _started(access, name, "kube-apiserver", _apiserver_argv(node), f"{node.ip}:{APISERVER_PORT}")
        with kube_access.kube(f"https://{node.ip}:{APISERVER_PORT}") as api:
            _wait_ready(api)
            one = LabCluster(lab.rendered, [node], [], lab.operator_replicas)
            changed += _applied(api, [o for o in _bootstrap_objects(one) if o["kind"] != "Namespace"],
                                f"{name}'s Node and CiliumNode")
            _register_node_addresses(api, one)
        if any(p.startswith(RESTART_ON["cilium-bgp-host"]) for p in wrote):
            run_checked(access, name, _python(f"{LAB_BIN}/twinrun.py", "stop", "cilium-bgp-host"))
        changed += _started(access, name, "cilium-bgp-host", _host_argv(node), STATUS_ADDR)
        return [f"{name}: k3s restarted (etcd member, kube-apiserver)"] + [_short(line) for line in changed]

    def retire(self, access: NodeAccess, name: str, remaining: list[str]) -> list[str]:
        """A node leaves the cluster: its etcd member is removed (through a remaining member), its Node and
        CiliumNode deleted, its processes stopped. What k3s does when a server's Node is deleted, plus
        ``k3s-killall.sh`` on the machine."""
        kube_access: KubeAccess = access  # type: ignore[assignment]
        lab = LabCluster.read(access.paths.rendered)
        others = [n for n in lab.nodes if n.name in remaining]
        if not others:
            raise LabError(f"cannot retire {name}: no remaining member to remove it through")
        changed = []
        removed = _etcd_remove(access, others, name)
        changed += [f"{name}: etcd member removed"] if removed else []
        with kube_access.kube(f"https://{others[0].ip}:{APISERVER_PORT}") as api:
            for result in delete_documents(api, [("v1", "Node", None, name), ("cilium.io/v2", "CiliumNode", None,
                                                                               name)]):
                changed += [f"deleted {result.ref}"] if result.action == "deleted" else []
        if _machine_up(access, name):
            for proc in ("cilium-bgp-host", "cilium-operator", "haproxy", "kube-apiserver", "etcd"):
                access.exec(name, _python(f"{LAB_BIN}/twinrun.py", "stop", proc), timeout=60)
            changed.append(f"{name}: k3s stopped")
        return changed

    def follow(self, access: NodeAccess) -> list[str]:
        """The lab's stand-ins follow what Cilium decided now: the Traefik DaemonSet's Service and
        EndpointSlice (no controller manager or Helm runs here), then each node's VIPs, HAProxy and Traefik
        stand-ins from its /state. Nothing of the rendered resources is applied (that is the rollout's)."""
        kube_access: KubeAccess = access  # type: ignore[assignment]
        lab = LabCluster.read(access.paths.rendered)
        live = [n for n in lab.nodes if _status_ok(access, n.name)]
        if not live:
            return []
        changed: list[str] = []
        with kube_access.kube(f"https://{live[0].ip}:{APISERVER_PORT}") as api:
            services, _ = read_services(lab.rendered, live)  # the DaemonSet runs on the nodes that run k3s
            changed += _applied(api, _standin_objects(services), "the stand-ins' objects", STANDIN_MANAGER)
            held = _wait_lb_ips(api, lab, lambda: None)
        changed += _each(live, lambda n: _data_path(access, n, _settled_state(access, n, lab, held), lab))
        return changed

    # ----------------------------------------------------------------- faults (drills)
    def signal_speaker(self, access: NodeAccess, node: str, sig: int) -> None:
        pid = run_checked(access, node, ["cat", f"{RUN_DIR}/cilium-bgp-host.pid"]).strip()
        run_checked(access, node, ["kill", f"-{int(sig)}", pid])

    def start_speaker(self, access: NodeAccess, node: str) -> None:
        lab = LabCluster.read(access.paths.rendered)
        _started(access, node, "cilium-bgp-host", _host_argv(_node_of(lab, node)), STATUS_ADDR)

    def stop_speaker_graceful(self, access: NodeAccess, node: str) -> None:
        """SIGTERM: the agent's own stop path (Cilium keeps its BGP servers: no Cease; docs/FACTS.md)."""
        run_checked(access, node, _python(f"{LAB_BIN}/twinrun.py", "stop", "cilium-bgp-host"))

    def stop_apiserver(self, access: NodeAccess, node: str) -> None:
        run_checked(access, node, _python(f"{LAB_BIN}/twinrun.py", "stop", "kube-apiserver"))

    def start_apiserver(self, access: NodeAccess, node: str) -> None:
        target = _node_of(LabCluster.read(access.paths.rendered), node)
        _started(access, node, "kube-apiserver", _apiserver_argv(target), f"{target.ip}:{APISERVER_PORT}")

    def node_state(self, access: NodeAccess, node: str) -> NodeState:
        return parse_state(_status(access, node, "state"))


def _each(nodes: list[K3sNode], fn: Callable[[K3sNode], list[str]]) -> list[str]:
    """``fn`` for every node at once (each is its own container); what changed, in node order."""
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        return [line for lines in pool.map(fn, nodes) for line in lines]


def _node_of(lab: LabCluster, name: str) -> K3sNode:
    for node in lab.nodes:
        if node.name == name:
            return node
    raise LabError(f"no node {name!r} in the rendered k3s configs ({', '.join(n.name for n in lab.nodes)})")


# ----------------------------------------------------------------------------- files
def _admin_token(pki_dir: Path) -> str:
    """The lab's admin token (system:masters), made once per lab, mode 0600, never printed."""
    path = pki_dir / ADMIN_TOKEN
    if not path.is_file():
        pki.ensure_ca(pki_dir)  # the directory, 0700
        pki.write_private(path, secrets.token_hex(32).encode())
    return path.read_text().strip()


def _node_files(access: NodeAccess, lab: LabCluster, node: K3sNode, token: str) -> dict[str, bytes]:
    cert = pki.ensure_node_cert(access.paths.pki, node.name, node.tls_san)
    sa_key, sa_pub = pki.ensure_signing_key(access.paths.pki, SA_KEY)
    ca = cert.ca_path.read_bytes()
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "lab",
        "clusters": [{"name": "lab", "cluster": {"server": f"https://{node.ip}:{APISERVER_PORT}",
                                                  "certificate-authority": f"{PKI_DIR}/ca.crt"}}],
        "users": [{"name": "lab-admin", "user": {"tokenFile": f"{PKI_DIR}/admin.token"}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab-admin"}}],
    }
    files = {f"{LAB_BIN}/{name}": (IN_CONTAINER / name).read_bytes() for name in SCRIPTS}
    files.update({
        f"{PKI_DIR}/ca.crt": ca,
        f"{PKI_DIR}/apiserver.crt": cert.cert_path.read_bytes(),
        f"{PKI_DIR}/apiserver.key": cert.key_path.read_bytes(),
        f"{PKI_DIR}/{SA_KEY}.key": sa_key.read_bytes(),
        f"{PKI_DIR}/{SA_KEY}.pub": sa_pub.read_bytes(),
        f"{PKI_DIR}/admin.token": token.encode(),
        TOKENS: f"{token},lab-admin,lab-admin,system:masters\n".encode(),
        KUBECONFIG: yaml.safe_dump(kubeconfig, sort_keys=False).encode(),
    })
    # the operator reads its configuration as the chart's cilium-config ConfigMap gives it: one file per key
    files.update({f"{OPERATOR_CONFIG}/{k}": v.encode() for k, v in cilium_config(lab.rendered).items()})
    return files


def _k3s_token(pki_dir: Path) -> str:
    """The lab cluster's join token, in k3s's own format (K10<CA hash>::server:<secret>), made once, 0600."""
    path = pki_dir / K3S_TOKEN
    if not path.is_file():
        pki.ensure_ca(pki_dir)
        ca_hash = pki.sha256_hex((pki_dir / pki.CA_CERT).read_bytes())  # k3s hashes its CA bundle's bytes
        pki.write_private(path, f"K10{ca_hash}::server:{secrets.token_hex(16)}".encode())
    return path.read_text().strip()


def _k3s_files(lab: LabCluster, node: K3sNode, token: str) -> dict[str, bytes]:
    """What a rack node holds for k3s: its config.yaml as rendered, and the token (the first server's own,
    a joiner's in its token-file)."""
    files = {K3S_CONFIG: (lab.rendered.root / node.file).read_bytes()}
    if node.cluster_init or not node.config.get("server"):
        files[K3S_SERVER_TOKEN] = (token + "\n").encode()
    if node.config.get("token-file"):
        files[str(node.config["token-file"])] = (token + "\n").encode()
    return files


def _put_changed(access: NodeAccess, node: str, files: dict[str, bytes]) -> list[str]:
    """Copy what differs (content, or a secret's mode); secrets 0600 in 0700 directories. Returns the paths."""
    other, secret, secret_dirs = pki.split_secrets(files)
    if KUBECONFIG in other:  # it names the token file, and stays private too
        secret[KUBECONFIG] = other.pop(KUBECONFIG)
    return put_changed(access, node, other, secret, secret_dirs)


# cilium-config ConfigMap key -> the Helm value it comes from (install/kubernetes/cilium/templates/
# cilium-configmap.yaml, Cilium 1.19.3), for the keys the operator acts on in this lab.
CONFIG_FROM_VALUES = {
    "enable-ipv4": "ipv4.enabled",
    "enable-ipv6": "ipv6.enabled",
    "ipam": "ipam.mode",
    "cluster-pool-ipv4-cidr": "ipam.operator.clusterPoolIPv4PodCIDRList",
    "cluster-pool-ipv4-mask-size": "ipam.operator.clusterPoolIPv4MaskSize",
    "enable-bgp-control-plane": "bgpControlPlane.enabled",
    "enable-lb-ipam": "enableLBIPAM",
    "enable-envoy-config": "envoyConfig.enabled",
    "kube-proxy-replacement": "kubeProxyReplacement",
}


def _chart_values() -> dict:
    pins = gobuild.Pins.read()
    root = Path(download(gobuild.CILIUM_MODULE, "v" + pins.cilium, why="Cilium's Helm chart defaults")["Dir"])
    return dict(yaml.safe_load((root / "install/kubernetes/cilium/values.yaml").read_text()))


def _merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def cilium_config(rendered: Rendered) -> dict[str, str]:
    """The cilium-config keys the lab's operator runs with: the rendered values over the chart's defaults."""
    values, _ = cilium_chart_values(rendered.cilium_values)
    merged = _merged(_chart_values(), dict(values or {}))
    out = {}
    for key, path in CONFIG_FROM_VALUES.items():
        value: Any = merged
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            continue
        out[key] = " ".join(map(str, value)) if isinstance(value, list) else (
            str(value).lower() if isinstance(value, bool) else str(value))
    return out


# process -> the files whose change restarts it (what restarting k3s would restart)
RESTART_ON = {"cilium-operator": OPERATOR_CONFIG, "kube-apiserver": PKI_DIR, "cilium-bgp-host": KUBECONFIG}


# ----------------------------------------------------------------------------- processes
def _etcd_argv(lab: LabCluster, node: K3sNode, peers: dict[str, str] | None = None,
               state: str = "new") -> list[str]:
    """``peers``: name -> peer URL of the cluster to join (default: every node, a new cluster)."""
    initial = ",".join(f"{n}={u}" for n, u in (peers or {n.name: f"http://{n.ip}:2380" for n in lab.nodes}).items())
    return ["etcd", "--name", node.name, "--data-dir", ETCD_DATA, "--listen-client-urls", f"http://{ETCD_CLIENT}",
            "--advertise-client-urls", f"http://{ETCD_CLIENT}", "--listen-peer-urls", f"http://{node.ip}:2380",
            "--initial-advertise-peer-urls", f"http://{node.ip}:2380", "--initial-cluster", initial,
            "--initial-cluster-state", state, "--initial-cluster-token", "k3s-bgp-lab",
            "--listen-metrics-urls", "http://127.0.0.1:2381"]


def _apiserver_argv(node: K3sNode) -> list[str]:
    return ["kube-apiserver", f"--etcd-servers=http://{ETCD_CLIENT}", f"--bind-address={node.ip}",
            f"--advertise-address={node.ip}", f"--secure-port={APISERVER_PORT}",
            f"--tls-cert-file={PKI_DIR}/apiserver.crt", f"--tls-private-key-file={PKI_DIR}/apiserver.key",
            f"--token-auth-file={TOKENS}", "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={PKI_DIR}/{SA_KEY}.pub",
            f"--service-account-signing-key-file={PKI_DIR}/{SA_KEY}.key",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--profiling=false", "--enable-priority-and-fairness=false"]


def _operator_argv() -> list[str]:
    return ["cilium-operator-generic", f"--k8s-kubeconfig-path={KUBECONFIG}", "--k8s-namespace=kube-system",
            "--identity-allocation-mode=crd", f"--config-dir={OPERATOR_CONFIG}", "--skip-crd-creation",
            "--enable-gops=false"]


def _host_argv(node: K3sNode) -> list[str]:
    return ["env", f"K8S_NODE_NAME={node.name}", "cilium-bgp-host", f"--k8s-kubeconfig-path={KUBECONFIG}",
            f"--status-addr={STATUS_ADDR}"]


ETCD_CALL = ("import json, sys, urllib.request\n"
             f"req = urllib.request.Request('http://{ETCD_CLIENT}/v3/cluster/member/' + sys.argv[1], "
             "data=sys.argv[2].encode(), headers={'Content-Type': 'application/json'})\n"
             "print(urllib.request.urlopen(req, timeout=10).read().decode())")


def _etcd(access: NodeAccess, via: list[K3sNode], call: str, body: dict) -> dict:
    """etcd's cluster API (its JSON gateway, inside a member: etcd listens on the node's loopback only)."""
    errors = []
    for member in via:
        res = access.exec(member.name, _python("-c", ETCD_CALL, call, json.dumps(body)), timeout=30)
        if res.exit_code == 0:
            return dict(json.loads(res.stdout))
        errors.append(f"{member.name}: {(res.stderr.strip().splitlines() or ['?'])[-1]}")
    raise LabError(f"etcd member {call} failed on every member asked", errors)


def _etcd_members(access: NodeAccess, via: list[K3sNode]) -> list[dict]:
    return list(_etcd(access, via, "list", {}).get("members") or [])


def _short(line: str) -> str:
    """``cat01: started etcd (pid 7): etcd --name ...`` without the command line."""
    return line.split("): ", 1)[0] + ")" if "): " in line else line


def _etcd_join(access: NodeAccess, members: list[dict], node: K3sNode) -> dict[str, str]:
    """Add ``node`` as a member (once: an earlier add that never started is reused); the initial-cluster it
    starts with (every started member, and itself)."""
    url = f"http://{node.ip}:2380"
    started = [m for m in members if m.get("name") and m.get("peerURLs")]
    if not started:
        raise LabError(f"{node.name}: no running etcd member to join")
    if not any(url in (m.get("peerURLs") or []) for m in members):
        via = [_member_node(access, m["name"]) for m in started]

        def added() -> bool | NotYet:
            # etcd refuses a member add (503) until every member has been connected for a while
            # (--strict-reconfig-check): right after the other nodes' restarts, it has to be asked again
            try:
                _etcd(access, via, "add", {"peerURLs": [url]})
                return True
            except LabError as exc:
                if any("503" in d for d in exc.details):
                    return NotYet("etcd: " + "; ".join(exc.details))
                raise

        wait_until(added, timeout=90, interval=1.0, what=f"etcd to accept {node.name} as a member")
    peers = {m["name"]: m["peerURLs"][0] for m in started if m["name"] != node.name}
    return {**peers, node.name: url}


def _member_node(access: NodeAccess, name: str) -> K3sNode:
    return _node_of(LabCluster.read(access.paths.rendered), name)


def _etcd_remove(access: NodeAccess, via: list[K3sNode], name: str) -> bool:
    for m in _etcd_members(access, via):
        if m.get("name") == name:
            _etcd(access, via, "remove", {"ID": m["ID"]})
            return True
    return False


def _machine_up(access: NodeAccess, name: str) -> bool:
    try:
        return access.exec(name, ["true"], timeout=10).exit_code == 0
    except LabToolError:
        return False


def _status_ok(access: NodeAccess, name: str) -> bool:
    """cilium-bgp-host answers on the node (k3s and Cilium run there)."""
    try:
        _status(access, name, "healthz")
        return True
    except (LabToolError, ValueError):
        return False


def _started(access: NodeAccess, node: str, name: str, argv: list[str], ready: str | None = None) -> list[str]:
    out = run_checked(access, node, _twinrun(name, argv, ready), timeout=120)
    return [f"{node}: {out.strip().splitlines()[-1]}"] if "started" in out else []


def _status(access: NodeAccess, node: str, what: str) -> dict:
    code = ("import json, sys, urllib.request\n"
            f"print(urllib.request.urlopen('http://{STATUS_ADDR}/' + sys.argv[1], timeout=5).read().decode())")
    res = access.exec_read(node, _python("-c", code, what), timeout=20)
    if res.exit_code != 0:
        raise LabError(f"{node}: cilium-bgp-host's /{what} does not answer (exit {res.exit_code})",
                       (res.stderr or res.stdout).strip().splitlines()[-5:])
    return dict(json.loads(res.stdout))


# ----------------------------------------------------------------------------- Kubernetes objects
def _crds() -> list[dict]:
    """Cilium's CRDs (v2 and v2alpha1) from Cilium's source at the version the lab builds."""
    pins = gobuild.Pins.read()
    root = Path(download(gobuild.CILIUM_MODULE, "v" + pins.cilium, why="Cilium's CRDs")["Dir"])
    docs = []
    for directory in CRD_DIRS:
        for path in sorted((root / directory).glob("*.yaml")):
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _bootstrap_objects(lab: LabCluster) -> list[dict]:
    """What k3s and the Cilium agent would register: Node and CiliumNode per node, the chart's namespace."""
    out: list[dict] = []
    for node in lab.nodes:
        out.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.name, "labels": node.labels}})
        out.append({"apiVersion": "cilium.io/v2", "kind": "CiliumNode",
                    "metadata": {"name": node.name, "labels": node.labels},
                    "spec": {"addresses": [{"type": "InternalIP", "ip": node.ip}]}})
    namespaces = {s.namespace for s in lab.services} | {d.namespace for d in lab.rendered.docs if d.namespace}
    out += [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            for ns in sorted(namespaces - {"default", "kube-system"})]
    return out


def _register_node_addresses(api: Any, lab: LabCluster) -> None:
    core = k8s.CoreV1Api(api)
    for node in lab.nodes:
        core.patch_node_status(node.name, {"status": {"addresses": [
            {"type": "InternalIP", "address": node.ip}, {"type": "Hostname", "address": node.name}]}})


TRAEFIK_ENTRYPOINT_PORTS = {"web": 8000, "websecure": 8443}  # the chart's container ports


def _rendered_objects(lab: LabCluster) -> list[dict]:
    """Every rendered Kubernetes document the lab can take (the rollout's resources step applies the same)."""
    return [d.body for d in lab.rendered.docs if not d.file.startswith("apps/")]  # Gateway API: no CRDs here


def _standin_objects(services: list[Service]) -> list[dict]:
    """The Traefik chart's Service and the EndpointSlice its DaemonSet would get (no Helm, no controller
    manager runs here to write them)."""
    wanted: list[dict] = []
    for svc in services:
        if not svc.source.startswith(TRAEFIK_SOURCE):
            continue
        wanted.append(svc.manifest())
        wanted.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{svc.name}-lab", "namespace": svc.namespace,
                         "labels": {SERVICE_NAME_LABEL: svc.name,
                                    "endpointslice.kubernetes.io/managed-by": "k3s-bgp-lab"}},
            "addressType": "IPv4",
            "ports": [{"name": p.name, "port": TRAEFIK_ENTRYPOINT_PORTS.get(p.name, p.port), "protocol": p.protocol}
                      for p in svc.ports],
            "endpoints": [{"addresses": [e.address], "nodeName": e.node_name, "conditions": {"ready": True}}
                          for e in svc.endpoints],
        })
    return wanted


def _release(api: Any, docs: list[dict], manager: str) -> None:
    """Drop ``manager``'s ownership of these objects (labs brought up before the stand-ins had their own field
    manager): an apply that names only the object gives up every field it owned and still shares."""
    bare = [{"apiVersion": d["apiVersion"], "kind": d["kind"],
             "metadata": {k: v for k, v in d["metadata"].items() if k in ("name", "namespace")}} for d in docs]
    for doc, empty in zip(docs, bare, strict=True):
        meta = doc["metadata"]
        live = get_object(api, doc["apiVersion"], doc["kind"], meta["name"], meta.get("namespace"))
        if live and any(m.get("manager") == manager for m in (live.get("metadata") or {}).get("managedFields") or []):
            apply_documents(api, [empty], field_manager=manager)


def _applied(api: Any, docs: list[dict], what: str, manager: str = FIELD_MANAGER) -> list[str]:
    results = apply_documents(api, docs, field_manager=manager)
    conflicts = [r for r in results if r.action == "conflict"]
    if conflicts:
        raise LabError(f"applying {what}: fields owned by another manager",
                       [f"{r.kind}/{r.name}: {', '.join(f'{f} ({m})' for f, m in r.conflicts)}" for r in conflicts])
    return [f"{r.action} {r.kind} {r.namespace + '/' if r.namespace else ''}{r.name}" for r in results
            if r.action in ("created", "changed")]


def _wait_ready(api: Any) -> None:
    def ready() -> bool | None:
        try:
            data = api.call_api("/readyz", "GET", _preload_content=False, _request_timeout=5)[0].data
        except Exception:  # noqa: BLE001 - not up yet: poll again
            return None
        return True if data.strip() == b"ok" else None

    wait_until(ready, timeout=60, interval=0.2, what="kube-apiserver /readyz")


def _alive(access: NodeAccess, node: str, name: str) -> None:
    """Raise with the process's last log lines when it is not running (e.g. Cilium's operator exited)."""
    if access.exec(node, _python(f"{LAB_BIN}/twinrun.py", "status", name), timeout=10).exit_code != 0:
        tail = access.exec(node, ["tail", "-n", "5", f"{LOG_DIR}/{name}.log"], timeout=10).stdout
        raise LabError(f"{node}: {name} is not running", tail.strip().splitlines())


IPAM_CONDITION = "cilium.io/IPAMRequestSatisfied"


def _wait_lb_ips(api: Any, lab: LabCluster, check: Callable[[], None], timeout: float = 60) -> set[str]:
    """Until LB-IPAM has answered every LoadBalancer Service: an address, or its condition saying why not.

    Returns every LoadBalancer address the Services hold then.
    """
    core = k8s.CoreV1Api(api)
    services = [s for s in lab.services if s.type == "LoadBalancer"]
    held: set[str] = set()

    def answered() -> set[str] | NotYet:
        check()
        held.clear()
        waiting = []
        for svc in services:
            status = core.read_namespaced_service(svc.name, svc.namespace).status
            ips = {i.ip for i in status.load_balancer.ingress or []}
            held.update(ips)
            refused = any(c.type == IPAM_CONDITION and c.status == "False" for c in status.conditions or [])
            pinned = {v.address for v in svc.vips}
            if not (refused or (ips and (not pinned or pinned <= ips))):
                waiting.append(svc.key)
        return set(held) if not waiting else NotYet(f"no answer from LB-IPAM yet for {', '.join(waiting)}")

    try:
        return wait_until(answered, timeout=timeout, interval=0.25, what="LB-IPAM's answer for every Service")
    except LabToolError:
        return set(held)  # verify names the Service that has none (lbipam:<ns>/<name>); the lab still comes up


def _expected_cceces(lab: LabCluster, node: K3sNode) -> set[str]:
    """The CiliumClusterwideEnvoyConfigs that apply to ``node`` (their nodeSelector matches its labels)."""
    out = set()
    for doc in lab.rendered.of_kind("CiliumClusterwideEnvoyConfig"):
        selector = doc.spec.get("nodeSelector")
        try:
            if selector is None or selector_matches(selector, node.labels):
                out.add(doc.name)
        except SelectorError:
            continue
    return out


STABLE_POLLS = 6  # the state must read the same this many polls in a row (1.5 s at 0.25 s)


def _settled_state(access: NodeAccess, node: K3sNode, lab: LabCluster, held: set[str],
                   timeout: float = 60) -> NodeState:
    """The node's /state once Cilium has decided: a frontend for every LoadBalancer IP the Services hold,
    every CCEC that applies to the node either taken (in its Envoy) or rejected (an error), no change for 1.5 s."""
    cceces = _expected_cceces(lab, node)
    seen: list[tuple[str, NodeState]] = []

    def settled() -> NodeState | NotYet:
        try:
            doc = _status(access, node.name, "state")
        except LabError as exc:  # 503 until every start hook of Cilium's hive has run
            return NotYet(str(exc))
        state = parse_state(doc)
        digest = json.dumps([(doc.get("loadBalancer") or {}).get("frontends"), (doc.get("envoy") or {}).get("cecs"),
                             (doc.get("envoy") or {}).get("errorsTotal")], sort_keys=True)
        seen.append((digest, state))
        del seen[:-STABLE_POLLS]
        missing = held - {f.address for f in state.load_balancer_frontends()}
        undecided = cceces - {c.name for c in state.envoy} if not state.errors else set()
        stable = len(seen) == STABLE_POLLS and len({d for d, _ in seen}) == 1
        if missing or undecided or not stable:
            return NotYet(f"frontends missing for {sorted(missing)}; CCECs not decided {sorted(undecided)}; "
                          f"{'stable' if stable else 'still changing'}")
        return state

    try:
        return wait_until(settled, timeout=timeout, interval=0.25, what=f"{node.name}: Cilium's decisions settle")
    except LabToolError:
        return seen[-1][1] if seen else parse_state(_status(access, node.name, "state"))


# ----------------------------------------------------------------------------- the data path
def proxy_frontends(state: NodeState, node_names: dict[str, str]) -> list[Frontend]:
    """HAProxy's frontends on one node: each LoadBalancer frontend Cilium redirects to Envoy, with the
    listener, cluster and endpoints Cilium pushed to this node (none pushed: a listener without upstream)."""
    out = []
    for fe in state.load_balancer_frontends():
        found = state.envoy_for(fe)
        if found is None:
            continue
        config, listener, cluster = found
        frontend = Frontend(config=config.name, service=fe.service, vip=fe.address, port=fe.port,
                            listener=Listener(listener.name, listener.cluster, listener.idle_timeout_written),
                            cluster=cluster.cluster if cluster is not None else None)
        if cluster is None:
            frontend.notes.append(f"listener {listener.name} forwards to {listener.cluster!r}, which Cilium did "
                                  "not give this node's Envoy: connections are accepted and closed")
        elif not cluster.eds_pushed or not cluster.endpoints:
            frontend.notes.append(f"Cilium pushed {'no' if not cluster.eds_pushed else 'an empty'} endpoint list for "
                                  f"{cluster.cluster.name} to {state.node}: connections are accepted and closed")
        else:
            frontend.backends = [Backend(node_names.get(ip, ip), ip, port) for ip, port in cluster.endpoints]
        out.append(frontend)
    return out


def _data_path(access: NodeAccess, node: K3sNode, state: NodeState, lab: LabCluster) -> list[str]:
    names = {n.ip: n.name for n in lab.nodes if n.ip}
    changed: list[str] = []
    vips = sorted({f.address for f in state.load_balancer_frontends() if ":" not in f.address})
    for vip in vips:  # Cilium puts no VIP on an interface; the stand-ins bind them on lo
        run_checked(access, node.name, ["ip", "addr", "replace", f"{vip}/32", "dev", "lo"])
    frontends = proxy_frontends(state, names)
    cfg = render_haproxy(frontends, node.name) if frontends else ""
    if cfg:
        if _put_changed(access, node.name, {HAPROXY_CFG: cfg.encode()}):
            run_checked(access, node.name, _python(f"{LAB_BIN}/twinrun.py", "stop", "haproxy"))
            changed.append(f"{node.name}: wrote {HAPROXY_CFG}")
        first = next((f for f in frontends if f.listener), None)
        changed += _started(access, node.name, "haproxy", ["haproxy", "-db", "-f", HAPROXY_CFG],
                            f"{first.vip}:{first.port}" if first else None)
    traefik = {s.key for s in lab.services if s.source.startswith(TRAEFIK_SOURCE)}
    for fe in state.load_balancer_frontends():
        if fe.proxy_redirected or fe.service not in traefik:
            continue
        changed += _started(access, node.name, f"traefik-{fe.address}-{fe.port}", _python(
            f"{LAB_BIN}/standin_traefik.py", "--bind", fe.address, "--port", str(fe.port), "--node", node.name,
            "--log", f"{LOG_DIR}/traefik-{fe.address}-{fe.port}-requests.log"), f"{fe.address}:{fe.port}")
    return changed

