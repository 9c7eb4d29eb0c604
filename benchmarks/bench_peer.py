#!/usr/bin/env python3
"""Side by side with netlab, the closest peer: start -> converged, and teardown.

    python benchmarks/bench_peer.py [--runs 3] [--json] [--timeout 120] [--netlab-version 26.10]

Both labs are brought up and torn down in turn, N runs each, the order swapped every round (ours
first in odd rounds, netlab first in even ones). Not a test; it does not run in CI. Needs root, Docker
and containerlab (`invoke setup`), and PyPI for the first run.

- **netlab** (`networklab` from PyPI, installed once into its own venv under
  ``~/.cache/k3s-bgp-lab/netlab-venv``) runs the equivalent lab: an FRR gateway and one FRR speaker per
  node of our inventory, all on one shared link, with the inventory's ASNs, each speaker originating both
  VIP /32s. No image can be pulled, so every node runs our own gateway image (FRR from Debian). Its offline
  settings are in ``benchmarks/peer/netlab.yml``. netlab keeps its user state (``~/.netlab``) in the venv.
- **k3s-bgp-lab**: ``python -m generators lab-up`` on the twin fidelity, ``benchmarks/peer/lab-twin.yml``
  (``topology/lab-twin.yml`` under its own lab name and bridge).

**Converged** (the same for both, issue 12): the gateway has one Established session per node and each
VIP /32 in its kernel FIB with exactly the Established peers as next-hops, read every 0.2 s with
``docker exec`` in the gateway container (lab addresses exist only inside the containers). The time runs
from the start of the up command to the end of the first poll that sees it. **Teardown**: ``netlab down
--cleanup`` vs ``python -m generators lab-down``, each to its exit. netlab's teardown leaves containerlab's
two FORWARD rules for its bridge behind; the benchmark removes them (untimed) after each run, and anything
else either lab left.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generators.gomod import cache_dir, file_lock  # noqa: E402
from generators.lab.kinds.gateway import NAME as GATEWAY_NODE  # noqa: E402
from generators.lab.names import container_name  # noqa: E402
from generators.readback.frrstate import kernel_next_hops, nexthop_objects, summary_peers  # noqa: E402

NETLAB_VERSION = "26.10"  # the release measured in issue 12
NETLAB_LAB = "bpeer"  # netlab's lab name: containers clab-bpeer-*, its link's bridge bpeer_1
NETLAB_MGMT = "netlab_mgmt"  # the Docker network netlab gives every node's eth0
PEER_DIR = ROOT / "benchmarks" / "peer"
OUR_INVENTORY = PEER_DIR / "lab-twin.yml"
POLL_S = 0.2
DOWN_TIMEOUT_S = 120
OURS, NETLAB = "k3s-bgp-lab", "netlab"


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(argv: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          check=False, **kw)


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def machine() -> str:
    info = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), platform.processor())
    mem = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
    return f"{os.cpu_count()} cores ({cpu}), {mem // 1024**2} GiB, kernel {platform.release()}"


# ---------------------------------------------------------------- netlab: venv, topology, environment


def netlab_venv(version: str) -> Path:
    """The venv with ``networklab==version`` (created once; a half-made one is made again)."""
    venv = cache_dir() / "netlab-venv"
    marker = venv / ".k3s-bgp-lab-installed"
    with file_lock(cache_dir() / "locks" / "netlab-venv.lock"):
        if marker.is_file() and marker.read_text().strip() == version and (venv / "bin" / "netlab").is_file():
            return venv
        if venv.exists():
            log(f"netlab venv {venv}: not networklab {version}; making it again")
            shutil.rmtree(venv)
        log(f"installing netlab (networklab=={version} from PyPI) into {venv} (once)")
        t0 = time.monotonic()
        made = run([sys.executable, "-m", "venv", str(venv)], timeout=300)
        if made.returncode != 0:
            raise BenchError(f"python -m venv {venv} failed: {made.stderr.strip()[-800:]}")
        pip = run([str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "-q",
                   f"networklab=={version}"], timeout=900)
        if pip.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            raise BenchError(f"pip install networklab=={version} failed (is PyPI reachable?): "
                             f"{(pip.stderr or pip.stdout).strip()[-1200:]}")
        (venv / "home").mkdir(exist_ok=True)
        marker.write_text(version + "\n")
        log(f"  netlab {version} installed in {time.monotonic() - t0:.0f} s")
    return venv


def netlab_topology(model, image: str) -> dict:
    """netlab's equivalent of our lab: benchmarks/peer/netlab.yml + what the inventory says."""
    topo = yaml.safe_load((PEER_DIR / "netlab.yml").read_text())
    vips = [f"{model.apiserver.address}/32", f"{model.traefik.address}/32"]
    topo["name"] = NETLAB_LAB
    topo["defaults"]["devices.frr.clab.image"] = image
    topo["nodes"] = {GATEWAY_NODE: {"bgp.as": model.gateway.asn}}
    for node in model.nodes:
        # eBGP to the gateway only, like our nodes (netlab would add iBGP between same-AS speakers)
        topo["nodes"][node.name] = {"bgp.as": model.bgp.cluster_asn, "bgp.originate": vips,
                                    "bgp.sessions.ipv4": ["ebgp"]}
    topo["links"] = [[GATEWAY_NODE, *(n.name for n in model.nodes)]]
    return topo


SUDO_SHIM = '#!/bin/sh\n# netlab prefixes host commands with sudo; this benchmark runs as root already\nexec env "$@"\n'
BRCTL_SHIM = (
    "#!/bin/sh\n# netlab only asks `brctl show BRIDGE` (does the bridge exist?)\n"
    '[ "$1" = show ] && [ -n "$2" ] && exec ip link show "$2" type bridge\n'
    'echo "brctl stand-in of bench_peer.py: only brctl show BRIDGE" >&2\nexit 2\n'
)


def netlab_env(venv: Path, work: Path) -> dict[str, str]:
    """netlab's environment: its venv first on PATH, `sudo`/`brctl` stand-ins where the host has none."""
    shims = work / "bin"
    shims.mkdir()
    for name, text in (("sudo", SUDO_SHIM), ("brctl", BRCTL_SHIM)):
        if shutil.which(name) is None:
            (shims / name).write_text(text)
            (shims / name).chmod(0o755)
    return {**os.environ, "PATH": f"{shims}:{venv / 'bin'}:{os.environ.get('PATH', '')}",
            "HOME": str(venv / "home"), "CLAB_VERSION_CHECK": "disable"}


# ---------------------------------------------------------------- convergence, as seen inside the gateway


@dataclass
class GatewayState:
    established: set[str] = field(default_factory=set)
    fib: dict[str, set[str]] = field(default_factory=dict)

    def converged(self, speakers: int) -> bool:
        return len(self.established) == speakers and all(hops == self.established for hops in self.fib.values())

    def summary(self) -> str:
        return f"{len(self.established)} Established; " + ", ".join(
            f"{vip} {len(h)} FIB next-hops" for vip, h in sorted(self.fib.items()))


SEP = "@@k3s-bgp-lab@@"


def probe_script(vips: list[str]) -> str:
    parts = ["vtysh -c 'show bgp summary json'"] + [f"ip -j route show {v}/32" for v in vips] + ["ip -j nexthop show"]
    return f"; echo {SEP}; ".join(parts)


def _json(text: str) -> object:
    try:
        return json.loads(text) if text.strip() else []
    except json.JSONDecodeError:
        return None


def gateway_state(container: str, vips: list[str]) -> GatewayState | None:
    """One look at the gateway (one ``docker exec``); None while the container or FRR is not there yet."""
    try:
        res = run(["docker", "exec", container, "sh", "-c", probe_script(vips)], timeout=10)
    except subprocess.TimeoutExpired:
        return None
    sections = res.stdout.split(SEP)
    if res.returncode not in (0, 1) or len(sections) != len(vips) + 2:
        return None
    summary, *routes, nexthops = (_json(s) for s in sections)
    objects = nexthop_objects(nexthops)
    state = GatewayState()
    state.established = {ip for ip, p in summary_peers(summary).items() if p.state == "Established"}
    state.fib = {vip: kernel_next_hops(r, f"{vip}/32", objects=objects) for vip, r in zip(vips, routes, strict=True)}
    return state


@dataclass
class Run:
    tool: str
    round: int
    converged_s: float
    up_exit_s: float  # when the up command itself exited
    polls: int
    teardown_s: float = 0.0
    removed_after: list[str] = field(default_factory=list)  # what the benchmark cleaned up after the teardown


def timed_up(tool: str, argv: list[str], env: dict[str, str], cwd: Path, gateway: str, vips: list[str],
             speakers: int, timeout: float, out: Path, rnd: int) -> Run:
    """Start ``argv`` and poll the gateway every POLL_S until converged; the up command must succeed too."""
    with open(out, "w") as fh:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
        try:
            polls, exit_s, state = 0, None, None
            next_poll = t0
            while True:
                if exit_s is None and proc.poll() is not None:
                    exit_s = time.monotonic() - t0
                    if proc.returncode != 0:
                        raise BenchError(f"{tool}: `{' '.join(argv)}` exited {proc.returncode} after {exit_s:.1f} s:\n"
                                         f"{tail(out)}")
                state = gateway_state(gateway, vips)
                polls += 1
                if state is not None and state.converged(speakers):
                    converged_s = time.monotonic() - t0
                    break
                if time.monotonic() - t0 > timeout:
                    seen = state.summary() if state else "gateway not answering"
                    raise BenchError(f"{tool}: not converged {timeout:.0f} s after start ({seen}); "
                                     f"output of `{' '.join(argv)}`:\n{tail(out)}")
                next_poll += POLL_S  # the condition is read every POLL_S (or back to back when a read is slower)
                pause = next_poll - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                else:
                    next_poll = time.monotonic()
            if exit_s is None:
                code = proc.wait(timeout=max(1.0, timeout - (time.monotonic() - t0)))
                exit_s = time.monotonic() - t0
                if code != 0:
                    raise BenchError(f"{tool}: converged, but `{' '.join(argv)}` then exited {code}:\n{tail(out)}")
        except BaseException:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            raise
    return Run(tool, rnd, round(converged_s, 2), round(exit_s, 2), polls)


def timed_down(tool: str, argv: list[str], env: dict[str, str], cwd: Path, out: Path) -> float:
    with open(out, "w") as fh:
        t0 = time.monotonic()
        code = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                              timeout=DOWN_TIMEOUT_S, check=False).returncode
        took = time.monotonic() - t0
    if code != 0:
        raise BenchError(f"{tool}: `{' '.join(argv)}` exited {code}:\n{tail(out)}")
    return round(took, 2)


# ---------------------------------------------------------------- what each lab leaves on the host


def lab_containers(lab: str) -> list[str]:
    """Full ids of the containers containerlab made for ``lab``."""
    res = run(["docker", "ps", "-aq", "--no-trunc", "--filter", f"label=containerlab={lab}"])
    return res.stdout.split()


def bridge_exists(name: str) -> bool:
    return run(["ip", "link", "show", name, "type", "bridge"]).returncode == 0


def forward_rules(bridge: str) -> list[list[str]]:
    """iptables FORWARD/DOCKER-USER rules (as ``-A CHAIN ...`` argv) that name ``bridge`` as an interface."""
    rules = []
    for chain in ("FORWARD", "DOCKER-USER"):
        for line in run(["iptables", "-S", chain]).stdout.splitlines():
            words = shlex.split(line)
            if words[:1] == ["-A"] and any(words[i] in ("-i", "-o") and words[i + 1] == bridge
                                           for i in range(len(words) - 1)):
                rules.append(words)
    return rules


def delete_rule(rule: list[str]) -> None:
    run(["iptables", "-D", *rule[1:]])


def mgmt_network_containers() -> list[str] | None:
    """Containers on netlab's management network; None when there is no such network."""
    res = run(["docker", "network", "inspect", NETLAB_MGMT, "-f", "{{json .Containers}}"])
    if res.returncode != 0:
        return None
    return list((json.loads(res.stdout or "null") or {}).keys())


def netlab_leftovers(remove: bool) -> list[str]:
    """What netlab's lab left on the host (its containers, bridge, FORWARD rules, an unused netlab_mgmt
    network, containerlab's ssh config); removed when ``remove``."""
    found = []
    bridge = f"{NETLAB_LAB}_1"
    ids = lab_containers(NETLAB_LAB)
    if ids:
        found.append(f"{len(ids)} container(s) of lab {NETLAB_LAB}")
        if remove:
            run(["docker", "rm", "-f", *ids], timeout=120)
    if bridge_exists(bridge):
        found.append(f"bridge {bridge}")
        if remove:
            run(["ip", "link", "del", bridge])
    for rule in forward_rules(bridge):
        found.append("iptables " + " ".join(rule))
        if remove:
            delete_rule(rule)
    attached = mgmt_network_containers()
    if attached == []:
        found.append(f"Docker network {NETLAB_MGMT} (no container attached)")
        if remove:
            run(["docker", "network", "rm", NETLAB_MGMT])
    ssh_conf = Path(f"/etc/ssh/ssh_config.d/clab-{NETLAB_LAB}.conf")
    if ssh_conf.exists():
        found.append(str(ssh_conf))
        if remove:
            ssh_conf.unlink()
    return found


def our_leftovers(lab: str, bridge: str) -> list[str]:
    found = [f"{len(ids)} container(s) of lab {lab}"] if (ids := lab_containers(lab)) else []
    found += [f"bridge {bridge}"] if bridge_exists(bridge) else []
    found += ["iptables " + " ".join(r) for r in forward_rules(bridge)]
    return found


# ---------------------------------------------------------------- the benchmark


def prepare_images(model) -> str:
    """Our lab's images, built when missing (untimed); returns the gateway image's tag."""
    from generators.lab.engine import Engine
    from generators.lab.images import ensure_images, image_tag
    from generators.lab.kinds import lab_kinds
    from generators.lab.prereqs import ensure_prereqs

    ensure_prereqs({"docker", "containerlab", "gobgp"}, log=lambda m: None)
    kinds = lab_kinds(model)
    for kind in kinds:
        kind.prepare(model, lambda m: None)
    specs = [k.image_spec(model) for k in kinds]
    def quiet(msg: str) -> None:  # only what building a missing image says
        if not msg.startswith("prereqs: ok") and ": present (" not in msg:
            log("  " + msg)

    ensure_images(specs, Engine(), quiet)
    gateway = next(s for s in specs if s.name == "gateway")
    return image_tag(gateway)


def median_of(runs: list[Run], tool: str, attr: str) -> float:
    return round(statistics.median(getattr(r, attr) for r in runs if r.tool == tool), 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="runs of each lab (default 3)")
    ap.add_argument("--timeout", type=float, default=120, help="seconds from start to converged before a run fails")
    ap.add_argument("--netlab-version", default=NETLAB_VERSION)
    ap.add_argument("--json", action="store_true", help="print the result as JSON on stdout (progress on stderr)")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if os.geteuid() != 0:
        log("bench_peer.py needs root (containerlab, bridges, iptables)")
        return 3

    from generators.model import load_model

    model = load_model(str(OUR_INVENTORY))
    assert model.lab is not None
    ours_lab, ours_bridge = model.lab.name, model.lab.bridge
    vips = [str(model.apiserver.address), str(model.traefik.address)]
    speakers = len(model.nodes)

    venv = netlab_venv(args.netlab_version)
    gateway_image = prepare_images(model)
    clab = run(["containerlab", "version"]).stdout
    clab_version = next((ln.split()[-1] for ln in clab.splitlines() if ln.strip().startswith("version:")), "?")

    # Leftovers of an interrupted earlier run of this benchmark are removed; another lab's are not touched.
    if set(mgmt_network_containers() or ()) - set(lab_containers(NETLAB_LAB)):
        log(f"Docker network {NETLAB_MGMT} is in use by another netlab lab; take that lab down first")
        return 3
    if found := netlab_leftovers(remove=True):
        log("removed what an earlier run left: " + "; ".join(found))
    ours_up = [sys.executable, "-m", "generators", "lab-up", "--inventory", str(OUR_INVENTORY)]
    ours_down = [sys.executable, "-m", "generators", "lab-down", "--inventory", str(OUR_INVENTORY)]
    run(ours_down, timeout=DOWN_TIMEOUT_S, cwd=ROOT)

    work = Path(tempfile.mkdtemp(prefix="k3s-bgp-lab-peer-"))
    netlab_dir = work / "netlab"
    netlab_dir.mkdir()
    topo = netlab_topology(model, gateway_image)
    topo["defaults"]["lab_status_file"] = str(work / "netlab-status.yaml")  # not netlab's global ~/.netlab
    (netlab_dir / "topology.yml").write_text(yaml.safe_dump(topo, sort_keys=False))
    nenv = netlab_env(venv, work)
    oenv = {**os.environ, "CLAB_VERSION_CHECK": "disable"}
    netlab_bin = str(venv / "bin" / "netlab")

    log(f"machine: {machine()}")
    log(f"netlab {args.netlab_version} vs k3s-bgp-lab twin ({OUR_INVENTORY.relative_to(ROOT)}); containerlab "
        f"{clab_version}; FRR image {gateway_image}; {args.runs} run(s) each, converged = {speakers} sessions "
        f"Established and {', '.join(vips)} with {speakers} FIB next-hops on the gateway, polled every {POLL_S} s")
    runs: list[Run] = []
    try:
        for rnd in range(1, args.runs + 1):
            order = (OURS, NETLAB) if rnd % 2 else (NETLAB, OURS)
            for tool in order:
                if tool == OURS:
                    r = timed_up(OURS, ours_up, oenv, ROOT, container_name(ours_lab, GATEWAY_NODE), vips, speakers,
                                 args.timeout, work / f"ours-up-{rnd}.log", rnd)
                    r.teardown_s = timed_down(OURS, ours_down, oenv, ROOT, work / f"ours-down-{rnd}.log")
                    if left := our_leftovers(ours_lab, ours_bridge):
                        raise BenchError(f"lab-down left {'; '.join(left)}")
                else:
                    r = timed_up(NETLAB, [netlab_bin, "up"], nenv, netlab_dir,
                                 container_name(NETLAB_LAB, GATEWAY_NODE), vips, speakers, args.timeout,
                                 work / f"netlab-up-{rnd}.log", rnd)
                    r.teardown_s = timed_down(NETLAB, [netlab_bin, "down", "--cleanup"], nenv, netlab_dir,
                                              work / f"netlab-down-{rnd}.log")
                    r.removed_after = netlab_leftovers(remove=True)
                runs.append(r)
                log(f"run {rnd} {tool:<12} converged {r.converged_s:5.2f} s (up command exited at {r.up_exit_s:5.2f} s,"
                    f" {r.polls} polls), teardown {r.teardown_s:4.2f} s"
                    + (f"; then removed {len(r.removed_after)} leftover(s)" if r.removed_after else ""))
    except BenchError as exc:
        log(f"benchmark failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; taking both labs down")
        return 130
    finally:
        if (netlab_dir / "clab.yml").exists():  # a run stopped half way: netlab's own teardown first
            run([netlab_bin, "down", "--cleanup"], env=nenv, cwd=netlab_dir, timeout=DOWN_TIMEOUT_S)
        netlab_leftovers(remove=True)
        run(ours_down, timeout=DOWN_TIMEOUT_S, cwd=ROOT)
        shutil.rmtree(work, ignore_errors=True)

    med = {t: {"converged_s": median_of(runs, t, "converged_s"), "up_exit_s": median_of(runs, t, "up_exit_s"),
               "teardown_s": median_of(runs, t, "teardown_s")} for t in (OURS, NETLAB)}
    ratio = {k: round(med[OURS][k] / med[NETLAB][k], 2) for k in ("converged_s", "teardown_s")}
    if args.json:
        print(json.dumps({
            "machine": machine(), "netlab_version": args.netlab_version, "containerlab_version": clab_version,
            "gateway_image": gateway_image, "our_inventory": str(OUR_INVENTORY.relative_to(ROOT)),
            "runs_each": args.runs, "poll_s": POLL_S,
            "converged": f"{speakers} Established sessions and {', '.join(vips)} with {speakers} FIB next-hops "
                         "(= the Established peers) on the gateway, via docker exec",
            "runs": [asdict(r) for r in runs], "median": med, "ratio_ours_to_netlab": ratio,
        }, indent=2))
    else:
        print(f"| median of {args.runs} | k3s-bgp-lab (twin) | netlab {args.netlab_version} | ratio |")
        print("|---|---|---|---|")
        print(f"| start → converged | {med[OURS]['converged_s']:.2f} s | {med[NETLAB]['converged_s']:.2f} s "
              f"| {ratio['converged_s']:.2f} |")
        print(f"| teardown | {med[OURS]['teardown_s']:.2f} s | {med[NETLAB]['teardown_s']:.2f} s "
              f"| {ratio['teardown_s']:.2f} |")
        print(f"(up command exited: k3s-bgp-lab {med[OURS]['up_exit_s']:.2f} s, netlab {med[NETLAB]['up_exit_s']:.2f} s"
              " median; ratio = k3s-bgp-lab / netlab)")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:  # before or after the runs: the runs clean up after themselves
        raise SystemExit(130) from None
