"""lab-up, lab-down and status: render -> images -> host wiring -> containerlab -> configure -> converge.

Each phase is timed; lab-up is idempotent (a second run on a converged lab changes nothing), and a
failed lab-up leaves a state that lab-down cleans up.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import EnvironmentProblem, InputError, LabError, LabToolError
from ..model import Model, load_model
from ..output import MANIFEST, manifest, write_tree
from ..pki import tighten_secrets
from ..readback.rendered import rack_files
from . import hostnet
from .access import LabAccess
from .converge import snapshot, wait_converged
from .engine import Engine
from .faults import LabFaults
from .images import ensure_images, image_tag
from .kinds import lab_kinds
from .names import bridge_port, lab_paths, validate_lab_name
from .state import LABEL_OWNER, MARKER, LabOwnedElsewhere, Owner, load_record, record_path, remove_lab_dir, write_marker
from .topology import CLAB_FILE, render_lab_files, switch_ports

Log = Callable[[str], None]


@dataclass
class Phase:
    name: str
    seconds: float
    changed: list[str] = field(default_factory=list)


@dataclass
class UpReport:
    lab: str
    phases: list[Phase] = field(default_factory=list)
    converged: dict = field(default_factory=dict)

    @property
    def changed(self) -> list[str]:
        return [c for p in self.phases for c in p.changed]


class LabUpInterrupted(KeyboardInterrupt):
    """Ctrl-C during lab-up, raised once the current phase has undone what it can; says what is left."""

    def __init__(self, phase: str, left: list[str], hint: str):
        super().__init__(phase)
        self.phase, self.left, self.hint = phase, left, hint


class _Phases:
    def __init__(self, report: UpReport, log: Log):
        self.report, self.log = report, log
        self.current = ""

    def run(self, name: str, fn: Callable[[], list[str] | None]) -> None:
        self.current = name
        self.log(f"[{name}] ...")
        t0 = time.monotonic()
        try:
            changed = fn() or []
        except LabToolError:
            raise
        except Exception as exc:  # every failure leaves lab-down able to clean up
            raise LabError(f"phase {name!r} failed: {exc}") from exc
        dt = time.monotonic() - t0
        self.report.phases.append(Phase(name, dt, list(changed)))
        self.log(f"[{name}] done in {dt:.1f} s" + (f" ({len(changed)} change(s))" if changed else " (no change)"))


def with_name(model: Model, name: str | None) -> Model:
    if not name or model.lab is None:
        return model
    return dataclasses.replace(model, lab=dataclasses.replace(model.lab, name=name))


def load_lab(inventory: str | Path, name: str | None = None, base: Path | None = None) -> LabFaults:
    if name is not None:
        validate_lab_name(name)
    return LabFaults(with_name(load_model(inventory), name), base=base)


def owner_of(lab: LabAccess) -> Owner:
    return Owner(lab_dir=str(lab.paths.root), inventory=str(lab.model.source))


LAB_ONLY_FILES = (MANIFEST, CLAB_FILE, "frr/daemons")


def handwritten_files(root: Path) -> dict[str, str]:
    """The rack files of a directory in the gen layout (a user's own configs), to rehearse exactly those."""
    files = rack_files(root, "--rendered")
    try:
        return {rel: p.read_text(encoding="utf-8") for rel, p in files.items() if rel not in LAB_ONLY_FILES}
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--rendered {root}: cannot read {exc}") from exc


def _render(lab: LabAccess, rendered_from: Path | None = None) -> list[str]:
    files = render_lab_files(lab.model, owner_of(lab).id)
    if rendered_from is not None:  # the user's own rack files replace ours; the lab's own files stay
        own = {rel: text for rel, text in files.items() if rel in LAB_ONLY_FILES and rel != MANIFEST}
        files = {**handwritten_files(rendered_from), **own}
        files[MANIFEST] = manifest(files, f"{lab.model.name} (files from {rendered_from})", lab.model.digest)
    current = lab.paths.rendered / MANIFEST
    if current.is_file() and current.read_text() == files[MANIFEST]:
        return []
    write_tree(files, lab.paths.rendered)
    return [f"rendered {len(files)} files into {lab.paths.rendered}"]


def claim(lab: LabAccess, take_over: bool = False) -> hostnet.HostState:
    """The lab's host record, owned by this checkout; refuses a lab of this name owned by another one."""
    record = load_record(lab.name)
    ours = owner_of(lab)
    recorded = Owner.from_dict(record.owner)
    foreign = [
        c.name for c in lab.engine.containers({"containerlab": lab.name}) if c.labels.get(LABEL_OWNER) != ours.id
    ]
    if not take_over and ((recorded is not None and recorded.id != ours.id) or foreign):
        whose = recorded.describe() if recorded is not None else "another checkout or an older version of this tool"
        raise LabOwnedElsewhere(
            f"lab {lab.name!r} already exists and belongs to {whose}"
            + (f"; its containers: {', '.join(sorted(foreign))}" if foreign else "")
            + f". Take it down with `invoke lab-down --name {shlex.quote(lab.name)}` (from any checkout), "
            f"give this one another name with --name, or take it over with `invoke lab-up --take-over`"
        )
    if record.lab_dir and record.lab_dir != str(lab.paths.root) and record.lab_dir not in record.former_lab_dirs:
        record.former_lab_dirs.append(record.lab_dir)
    record.lab, record.owner, record.lab_dir = lab.name, ours.to_dict(), str(lab.paths.root)
    record.save(record_path(lab.name))
    write_marker(lab.paths.root, lab.name, ours)
    return record


def _containerlab(args: list[str], lab: LabAccess, log: Log, timeout: float = 600) -> subprocess.CompletedProcess:
    exe = shutil.which("containerlab")
    if exe is None:
        raise LabError("containerlab is not installed; `invoke lab-up` installs it (or run `invoke setup`)")
    env = {**os.environ, "CLAB_LABDIR_BASE": str(lab.paths.state), "CLAB_VERSION_CHECK": "disable"}
    lab.paths.state.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        [exe, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
        cwd=str(lab.paths.rendered) if lab.paths.rendered.is_dir() else None,
    )
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-25:]
        raise LabError(f"containerlab {' '.join(args[:1])} failed (exit {res.returncode})", tail)
    return res


def _prepare_ports(lab: LabAccess, host: hostnet.HostState, have: set[str], log: Log,
                   runner: hostnet.Run = hostnet.run) -> list[str]:
    """Record the host ports a deploy makes, before it makes them (lab-down removes them even after a kill),
    and delete those of nodes without a container: a port whose container is gone is left over, and
    containerlab refuses to create a link whose host name exists."""
    ports = switch_ports(lab.model)
    host.ports = sorted({*host.ports, *ports})
    host.save(record_path(lab.name))
    stale = sorted(p for p, node in ports.items() if node not in have)
    return hostnet.remove_ports(stale, "left by a removed container of this lab", log, runner)


def _deploy(lab: LabAccess, log: Log, rerendered: bool, host: hostnet.HostState) -> list[str]:
    wanted = {*lab.nodes, lab.gateway, lab.client}
    have = lab.running_containers()
    if not rerendered and wanted <= {n for n, s in have.items() if s == "running"}:
        return []
    stale = _prepare_ports(lab, host, set(have), log)
    args = ["deploy", "-t", str(lab.paths.clab_file)]
    if have:
        args.append("--reconfigure")  # some containers are missing, stopped or stale: rebuild them
    log(f"  containerlab {' '.join(args)}")
    _containerlab(args, lab, log)
    return stale + [f"containerlab deployed {len(wanted)} nodes"]


def reconcile_machines(lab: LabAccess, log: Log = print) -> list[str]:
    """The lab's machines (containers) made to match its inventory without touching the others: what racking
    or removing a mini PC is on the rack. containerlab reconciles a deployed lab with its topology (adds and
    removes nodes, leaves the rest running: docs/FACTS.md#containerlab). Nothing is configured on a new machine."""
    wanted = {*lab.nodes, lab.gateway, lab.client}
    have = lab.running_containers()
    if set(have) == wanted and all(s == "running" for s in have.values()):
        return []
    changed = _render(lab)
    specs = [k.image_spec(lab.model) for k in lab_kinds(lab.model)]
    ensure_images(specs, lab.engine, log)
    changed += _prepare_ports(lab, load_record(lab.name), set(have), log)
    log(f"  containerlab deploy -t {lab.paths.clab_file} (reconcile: {', '.join(sorted(wanted - set(have))) or '-'} "
        f"added, {', '.join(sorted(set(have) - wanted)) or '-'} removed)")
    _containerlab(["deploy", "-t", str(lab.paths.clab_file)], lab, log)
    added, removed = sorted(wanted - set(have)), sorted(set(have) - wanted)
    changed += hostnet.remove_ports([bridge_port(lab.name, n) for n in removed], "its machine is removed", log)
    changed += hostnet.attach_ports(lab.lab.bridge, sorted(switch_ports(lab.model)), log)
    changed += tighten_secrets(lab.paths.root)
    return changed + [f"machine {n} created" for n in added] + [f"machine {n} removed" for n in removed]


def lab_up(
    lab: LabAccess,
    log: Log = print,
    ensure: Callable[[set[str]], object] | None = None,
    take_over: bool = False,
    rendered_from: Path | None = None,
) -> UpReport:
    """Bring the lab to its converged state (idempotent). Ctrl-C raises :class:`LabUpInterrupted`."""
    report = UpReport(lab.name)
    phases = _Phases(report, log)
    host = claim(lab, take_over)
    rendered: list[str] = []
    topology_before = lab.paths.clab_file.read_bytes() if lab.paths.clab_file.is_file() else b""

    def render() -> list[str]:
        rendered.extend(_render(lab, rendered_from))
        return rendered

    def topology_changed() -> bool:
        """Only a new containerlab topology needs the containers rebuilt; the rack's files are configured."""
        return lab.paths.clab_file.read_bytes() != topology_before

    def prereqs() -> list[str]:
        assert ensure is not None
        ensure({"docker", "containerlab", "gobgp"})
        return []

    def images() -> list[str]:
        built = [c for k in lab_kinds(lab.model) for c in k.prepare(lab.model, log)]  # binaries first
        specs = {k.role: k.image_spec(lab.model) for k in lab_kinds(lab.model)}
        before = {s.name for s in specs.values() if not lab.engine.image_exists(image_tag(s))}
        ensure_images(list(specs.values()), lab.engine, log)
        return built + [f"built image {n}" for n in sorted(before)]

    def wire() -> list[str]:
        own = frozenset(switch_ports(lab.model))
        try:
            return hostnet.ensure_bridge_and_rules(
                lab.lab.bridge, host, log, own_ports=own, persist=lambda: host.save(record_path(lab.name))
            )
        finally:
            host.save(record_path(lab.name))

    def link() -> list[str]:
        # containerlab writes its own CA key world-readable under the lab directory (docs/FACTS.md#containerlab)
        return hostnet.attach_ports(lab.lab.bridge, sorted(switch_ports(lab.model)), log) + tighten_secrets(
            lab.paths.root
        )

    def converge() -> list[str]:
        report.converged = wait_converged(lab, log)
        return []

    steps: list[tuple[str, Callable[[], list[str] | None]]] = [("render", render)]
    steps += [("prereqs", prereqs)] if ensure is not None else []
    steps += [
        ("images", images),
        ("host-network", wire),
        ("deploy", lambda: _deploy(lab, log, topology_changed(), host)),
        ("host-links", link),
        ("configure", lambda: [c for kind in configure_order(lab.model) for c in kind.configure(lab)]),
        ("converge", converge),
    ]
    try:
        for name, fn in steps:
            phases.run(name, fn)
    except KeyboardInterrupt as exc:
        if isinstance(exc, LabUpInterrupted):
            raise
        raise LabUpInterrupted(phases.current, leftovers(lab), down_command(lab.name)) from None
    return report


def configure_order(model: Model) -> list:
    """The kinds in the order they are configured: the cluster last (it reaches its API through the client)."""
    return sorted(lab_kinds(model), key=lambda k: k.role == "cluster")


def down_command(name: str) -> str:
    return f"invoke lab-down --name {shlex.quote(name)}"


def leftovers(lab: LabAccess) -> list[str]:
    """What the lab has on the host right now (for a message after an interrupt)."""
    record = load_record(lab.name)
    out = [f"bridge {record.bridge}"] if record.bridge_created and hostnet.link_exists(record.bridge) else []
    out += [f"iptables rule {' '.join(r)}" for r in record.rules]
    try:
        out += [f"container {c.name} ({c.state})" for c in lab.engine.containers({"containerlab": lab.name})]
    except EnvironmentProblem:
        pass
    if lab.paths.root.exists():
        out.append(f"directory {lab.paths.root}")
    return out


def failure_logs(lab: LabAccess, lines: int = 15) -> list[str]:
    """The last lines of every kind's logs inside the containers, for a failed lab-up."""
    out: list[str] = []
    running = {n for n, state in lab.running_containers().items() if state == "running"}
    if not running:
        return ["(no lab container is running: nothing to show from inside)"]
    for kind in lab_kinds(lab.model):
        for node in [n for n in kind.node_names(lab.model) if n in running]:
            for path in kind.log_files():
                try:
                    res = lab.exec(node, ["tail", "-n", str(lines), path], timeout=10)
                except Exception as exc:  # noqa: BLE001 - container may be gone; say so
                    out.append(f"{node}:{path}: unavailable ({exc})")
                    continue
                out += [f"{node}:{path}: {line}" for line in res.stdout.splitlines()]
    return out


def lab_down(name: str, log: Log = print, base: Path | None = None) -> list[str]:
    """Remove the lab's containers, links, bridge, our iptables rules and its directory. Idempotent.

    Works from the host record (``generators.lab.state``), so from any checkout and with ``build/`` gone.
    A directory is removed only when it is a lab directory that lab-up made for this name.
    """
    validate_lab_name(name)
    paths = lab_paths(name, base)
    record = load_record(name)
    legacy = hostnet.HostState.load(paths.host_state)  # a lab brought up before records lived on the host
    dirs = [Path(d) for d in dict.fromkeys([record.lab_dir, *record.former_lab_dirs, str(paths.root)]) if d]
    done: list[str] = []
    clab = shutil.which("containerlab")
    clab_file = next((d / "rendered" / CLAB_FILE for d in dirs if (d / "rendered" / CLAB_FILE).is_file()), None)
    if clab and clab_file is not None:
        env = {
            **os.environ,
            "CLAB_LABDIR_BASE": str(clab_file.parent.parent / "state"),
            "CLAB_VERSION_CHECK": "disable",
        }
        res = subprocess.run(
            [clab, "destroy", "-t", str(clab_file), "--cleanup"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        if res.returncode != 0:
            log(f"  containerlab destroy: exit {res.returncode}: {(res.stderr or res.stdout).strip()[-300:]}")
        else:
            done.append("containerlab destroy")
    no_docker: EnvironmentProblem | None = None
    try:
        engine = Engine()
        for info in engine.containers({"containerlab": name}):  # whatever containerlab did not remove
            engine.remove(info.name)
            done.append(f"removed container {info.name}")
    except EnvironmentProblem as exc:
        no_docker = exc
    for line in done:
        log(f"  {line}")
    for state in (legacy, record):
        done += hostnet.teardown(state, log)  # logs its own lines
    for directory in dirs:
        if remove_lab_dir(directory, name):
            done.append(f"removed {directory}")
            log(f"  removed {directory}")
        elif directory.exists():
            log(f"  left {directory}: not a lab directory lab-up made for {name!r} (no {MARKER}); remove it by hand")
    if no_docker is not None:  # keep the record: the containers may still exist
        raise EnvironmentProblem(
            f"lab {name}: the host network and directories are cleaned up, but Docker is not "
            f"reachable, so its containers may remain ({no_docker}). Start dockerd "
            f"(`invoke setup`) and run `{down_command(name)}` again"
        )
    if record_path(name).exists():
        record_path(name).unlink()
    return done


def status(lab: LabAccess) -> dict:
    containers = lab.running_containers()
    expected = [n for kind in lab_kinds(lab.model) for n in kind.node_names(lab.model)]
    out: dict = {
        "lab": lab.name,
        "containers": containers,
        "missing": [n for n in expected if n not in containers] if containers else [],
        "not_running": sorted(n for n, state in containers.items() if state != "running"),
        "nodes": lab.nodes,
        "vips": lab.vips,
        "sessions": {},
        "routes": {},
        "fib": {},
    }
    if containers.get(lab.gateway) == "running":
        try:
            snap = snapshot(lab, list(lab.vips.values()))
            out.update(sessions=snap["sessions"], routes=snap["next_hops"], fib=snap["fib"])
        except LabError as exc:
            out["error"] = str(exc)
    return out


def format_status(st: dict) -> str:
    lines = [f"lab {st['lab']}"]
    for node, state in sorted(st["containers"].items()):
        lines.append(f"  container {node:<8} {state}")
    if not st["containers"]:
        lines.append("  no containers (lab is down)")
    for node in st.get("missing", []):
        lines.append(f"  container {node:<8} MISSING (the lab is incomplete: `invoke lab-up` recreates it)")
    names = {ip: n for n, ip in st["nodes"].items()}
    for ip, state in sorted(st["sessions"].items()):
        lines.append(f"  session {ip:<15} {names.get(ip, '?'):<6} {state}")
    for role, vip in st["vips"].items():
        hops = st["routes"].get(vip)
        if hops is not None:
            via = ", ".join(f"{h} ({names.get(h, '?')})" for h in hops) or "nothing"
            lines.append(f"  vip {role:<10} {vip:<15} via {via}")
    if st.get("error"):
        lines.append(f"  error: {st['error']}")
    return "\n".join(lines)


def format_up(report: UpReport) -> str:
    lines = [f"lab {report.lab} is up"]
    conv = report.converged
    for ip, state in sorted(conv.get("sessions", {}).items()):
        lines.append(f"  session {ip:<15} {state}")
    for vip, hops in sorted(conv.get("next_hops", {}).items()):
        lines.append(f"  vip {vip:<15} next-hops {', '.join(sorted(hops)) or '-'}")
    total = sum(p.seconds for p in report.phases)
    lines.append(
        "  phases: " + ", ".join(f"{p.name} {p.seconds:.1f}s" for p in report.phases) + f" (total {total:.1f}s)"
    )
    if report.changed:
        per_phase = ", ".join(f"{p.name} {len(p.changed)}" for p in report.phases if p.changed)
        lines.append(f"  changes: {len(report.changed)} ({per_phase}; `--json` lists them)")
    else:
        lines.append("  changes: none (already converged)")
    return "\n".join(lines)


def report_json(report: UpReport) -> str:
    return json.dumps(dataclasses.asdict(report), indent=2, sort_keys=True, default=sorted)
