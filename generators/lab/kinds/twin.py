"""Twin cluster nodes: GoBGP configured the way Cilium configures it, from the rendered resources (the
Python twin in ``generators.twin``), plus the data path Cilium would provide (VIPs on the node, an L4
proxy with active health checks in front of the apiserver endpoints, a stand-in apiserver and a stand-in
Traefik)."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from ...errors import LabError
from ...model import Model
from ...pki import split_secrets
from ...twin import TwinNode, TwinPlan, plan_twin
from ...twin.plan import TWIN_BIN, TWIN_LOG
from ...versions import GOBGP_MODULE, GOBGP_VERSION
from ..images import IDLE_CHANGES, ExtraFile, ImageSpec
from ..names import LabPaths
from ..prereqs import gobgp_paths
from .base import ClusterKind, NodeAccess, command_failed, linux_node, put_changed

PACKAGES = ("tini", "haproxy", "python3", "iproute2", "iptables", "procps", "iputils-ping", "openssl")
LOG_FILES = [f"{TWIN_LOG}/gobgpd-k3s-bgp.log", f"{TWIN_LOG}/haproxy.log", f"{TWIN_LOG}/apiserver.log"]
TWINRUN = f"{TWIN_BIN}/twinrun.py"
PID_DIR = "/run/twin"
_SIGNAL = "import os, sys; os.kill(int(open(sys.argv[1]).read().strip()), int(sys.argv[2]))"


def twin_spec() -> ImageSpec:
    files = tuple(ExtraFile(f"/usr/local/bin/{name}", path, identity=f"{name} {GOBGP_MODULE}@v{GOBGP_VERSION}")
                  for name, path in gobgp_paths().items())
    return ImageSpec(name="twin", suite="bookworm", packages=PACKAGES, extra_files=files, changes=IDLE_CHANGES,
                     note=f"twin node: GoBGP {GOBGP_VERSION} speaker, haproxy L4 proxy, python3 stand-ins")


@lru_cache(maxsize=8)
def _plan(rendered_dir: str, manifest: str, k3s_version: str, traefik_chart: str) -> TwinPlan:
    return plan_twin(rendered_dir, k3s_version=k3s_version, traefik_chart_version=traefik_chart)


def twin_plan(paths: LabPaths, model: Model) -> TwinPlan:
    """The twin's plan for the lab's rendered directory (cached per MANIFEST, so per rendering)."""
    rendered = paths.rendered
    manifest = (rendered / "MANIFEST.json").read_text() if (rendered / "MANIFEST.json").is_file() else ""
    return _plan(str(rendered), manifest, model.k3s_version, model.traefik_chart_version)


def _run_all(access: NodeAccess, node: str, cmds: list[list[str]], timeout: float = 60.0) -> list[str]:
    """Run ``cmds`` in order in one ``docker exec`` (``twinrun.py batch``); stop at the first failure.

    Returns each command's stdout. The first command that fails raises, naming it, with its output's tail.
    """
    res = access.exec(node, ["python3", TWINRUN, "batch", json.dumps(cmds), "--timeout", f"{timeout:g}"],
                      timeout=timeout * len(cmds) + 10)
    outputs: list[str] = []
    for line in res.stdout.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("rc") != 0:
            raise command_failed(node, record["argv"], record["rc"], record.get("stderr") or record.get("stdout") or "")
        outputs.append(str(record.get("stdout", "")))
    if res.exit_code != 0 or len(outputs) != len(cmds):
        raise LabError(f"{node}: twinrun.py batch failed (exit {res.exit_code}) after {len(outputs)} of "
                       f"{len(cmds)} commands", (res.stderr or res.stdout).strip().splitlines()[-15:])
    return outputs


def _configure_node(access: NodeAccess, name: str, node: TwinNode) -> list[str]:
    changed: list[str] = []
    other, secret, secret_dirs = split_secrets(node.files(access.paths.pki))
    wrote = put_changed(access, name, other, secret, secret_dirs)  # one exec compares them all
    if wrote:
        changed.append(f"{name}: wrote {len(wrote)} file(s)")
    for out in _run_all(access, name, node.start_commands()):  # and one exec starts what is not running
        if "started" in out:
            changed.append(f"{name}: {out.strip().splitlines()[-1]}")
    return changed


class TwinKind(ClusterKind):
    fidelity = "twin"

    def image_spec(self, model: Model) -> ImageSpec:
        return twin_spec()

    def clab_nodes(self, model: Model, image: str) -> dict[str, dict]:
        prefix = model.subnet.prefixlen
        return {n.name: linux_node(image, [
            f"ip addr add {n.address}/{prefix} dev eth1",
            # the gateway is the nodes' default route, as on the rack
            f"ip route replace default via {model.gateway.address} dev eth1",
        ], sysctls={  # VIPs sit on lo: never answer ARP for them (Cilium puts them on no interface)
            "net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.all.arp_announce": "2"}) for n in model.nodes}

    def log_files(self) -> list[str]:
        return LOG_FILES

    def configure(self, access: NodeAccess) -> list[str]:
        """Each node's files (only those that differ) and its idempotent start commands, all nodes at once."""
        plan = twin_plan(access.paths, access.model)
        with ThreadPoolExecutor(max_workers=max(1, len(plan.nodes))) as pool:
            per_node = list(pool.map(lambda item: _configure_node(access, *item), plan.nodes.items()))
        return [line for lines in per_node for line in lines]

    # ----------------------------------------------------------------- faults (drills)
    def _node(self, access: NodeAccess, node: str) -> TwinNode:
        plan = twin_plan(access.paths, access.model)
        if node not in plan.nodes:
            raise LabError(f"no twin node {node!r}; nodes: {', '.join(plan.nodes)}")
        return plan.nodes[node]

    def _speaker(self, access: NodeAccess, node: str) -> str:
        names = [p for p in self._node(access, node).processes() if p.startswith("gobgpd-")]
        if not names:
            raise LabError(f"{node} runs no BGP speaker (its labels match no CiliumBGPClusterConfig)")
        return names[0]

    def _start(self, access: NodeAccess, node: str, process: str) -> None:
        """Start one process the way lab-up does (a speaker also re-injects its routes)."""
        cmds = [c for c in self._node(access, node).restart_commands(process)
                if c[:4] != ["python3", TWINRUN, "stop", process]]
        _run_all(access, node, cmds)

    def signal_speaker(self, access: NodeAccess, node: str, sig: int) -> None:
        pid_file = f"{PID_DIR}/{self._speaker(access, node)}.pid"
        _run_all(access, node, [["python3", "-c", _SIGNAL, pid_file, str(int(sig))]])

    def start_speaker(self, access: NodeAccess, node: str) -> None:
        self._start(access, node, self._speaker(access, node))

    def stop_speaker_graceful(self, access: NodeAccess, node: str) -> None:
        _run_all(access, node, [["python3", TWINRUN, "stop", self._speaker(access, node)]])

    def stop_apiserver(self, access: NodeAccess, node: str) -> None:
        _run_all(access, node, [["python3", TWINRUN, "stop", "apiserver"]])

    def start_apiserver(self, access: NodeAccess, node: str) -> None:
        self._start(access, node, "apiserver")
