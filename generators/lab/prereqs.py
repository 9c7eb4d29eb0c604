"""Machine prerequisites for the lab, ensured idempotently on Debian/Ubuntu.

Two halves:
- ``plan_prereqs(need, probe)`` decides what is missing. It is pure: everything it knows about the
  machine comes from the ``Probe`` it is given, so it is unit-tested with a fake probe.
- ``ensure_prereqs(need, log)`` probes the real machine, plans, and carries the plan out, printing
  each thing it installs or starts. When everything is present it prints one short line.

Parts (the ``need`` set):
- ``docker``: docker.io, iproute2, iptables, and a running Docker engine.
- ``containerlab``: containerlab v0.79.0 in /usr/local/bin (built with Go).
- ``gobgp``: gobgpd/gobgp v3.37.0 in the lab cache (built with Go).
- ``frr-check``: the ``frr`` and ``haproxy`` packages, for the real config checks (``vtysh --dryrun``,
  ``haproxy -c``) the unit tests run on rendered files.
- ``images``: what the offline image build needs: debootstrap, plus the ``gobgp`` part.
- ``cilium``: the Cilium fidelity's Go binaries (kube-apiserver, etcd, Cilium's operator, cilium-bgp-host),
  built once from the Go module proxy and cached by content (``generators.gobuild``).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from generators.errors import EnvironmentProblem
from generators.gobuild import BINARIES, binary_identities, ensure_binaries
from generators.gomod import cache_dir, download, file_lock, go_env
from generators.versions import CONTAINERLAB_MODULE, CONTAINERLAB_VERSION, GOBGP_MODULE, GOBGP_VERSION

Log = Callable[[str], None]

# containerlab v0.79.0 `deploy` reads /proc/modules and stops when it is missing, which it is on kernels
# built without loadable-module support (this machine; docs/FACTS.md#containerlab). On such kernels we
# build it with a one-line fix, applied at build time to a scratch copy of the module's source (nothing
# of containerlab is kept in this repository): a missing /proc/modules means "no module loaded", after
# which containerlab itself falls back to assuming the module is built in. The build's commit field
# carries the mark.
CLAB_PATCH_MARK = "procmodules-optional"
CLAB_PATCH_FILE = "utils/kernel_module.go"
CLAB_PATCH_OLD = """\tf, err := os.Open("/proc/modules")
\tif err != nil {
\t\treturn false, err
\t}
"""
CLAB_PATCH_NEW = """\tf, err := os.Open("/proc/modules")
\tif os.IsNotExist(err) {
\t\treturn false, nil
\t}
\tif err != nil {
\t\treturn false, err
\t}
"""
GOBGP_COMMANDS = ("gobgpd", "gobgp")
# containerlab v0.79.0 declares `go 1.26.0`; GoBGP v3.37.0 declares `go 1.23.0`.
GO_MIN_FOR = {"containerlab": (1, 26), "gobgp": (1, 23)}

PARTS = frozenset({"docker", "containerlab", "gobgp", "frr-check", "images", "cilium"})

# Debian package -> the commands that prove it is there (works without dpkg too).
PACKAGE_COMMANDS: dict[str, tuple[str, ...]] = {
    "docker.io": ("dockerd", "docker"),
    "iproute2": ("ip", "bridge"),
    "iptables": ("iptables",),
    "frr": ("vtysh",),
    "haproxy": ("haproxy",),
    "debootstrap": ("debootstrap",),
}
PART_PACKAGES: dict[str, tuple[str, ...]] = {
    "docker": ("docker.io", "iproute2", "iptables"),
    "containerlab": ("iproute2", "iptables"),
    "gobgp": (),
    "frr-check": ("frr", "haproxy"),
    "images": ("debootstrap",),
    "cilium": (),
}
DOCKER_START_TIMEOUT_S = 60.0


def bin_dir() -> Path:
    """Where the GoBGP binaries live (``gobgpd``, ``gobgp``)."""
    return cache_dir() / "bin"


def gobgp_paths() -> dict[str, Path]:
    """Command name -> path of the GoBGP v3.37.0 binaries built by ``ensure_prereqs({"gobgp"})``."""
    return {name: bin_dir() / name for name in GOBGP_COMMANDS}


CONTAINERLAB_BIN = Path("/usr/local/bin/containerlab")


def dockerd_log_path() -> Path:
    """The log file of a ``dockerd`` started by ``ensure_prereqs``."""
    return cache_dir() / "dockerd.log"


class PrereqError(EnvironmentProblem):
    """A prerequisite is missing and cannot be installed here; the message says what to do."""


# ---------------------------------------------------------------- deciding (pure)


class Probe(Protocol):
    """What the planner may ask about the machine."""

    def has_apt(self) -> bool: ...

    def has_command(self, name: str) -> bool: ...

    def docker_running(self) -> bool: ...

    def containerlab_version(self) -> str | None: ...

    def kernel_lists_modules(self) -> bool: ...

    def gobgp_version(self, command: str) -> str | None: ...

    def go_version(self) -> tuple[int, int] | None: ...

    def cilium_binaries_missing(self) -> list[str]: ...


@dataclass(frozen=True)
class Step:
    """One thing to do. ``kind`` is apt-install, start-dockerd, build-containerlab or build-gobgp."""

    kind: str
    items: tuple[str, ...] = ()
    why: str = ""


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    present: tuple[str, ...] = field(default=())  # short descriptions of what is already fine

    @property
    def empty(self) -> bool:
        return not self.steps


def _packages_for(need: frozenset[str]) -> list[str]:
    pkgs: set[str] = set()
    for part in need:
        pkgs.update(PART_PACKAGES[part])
    return sorted(pkgs)


def _expand(need: set[str] | frozenset[str]) -> frozenset[str]:
    unknown = set(need) - PARTS
    if unknown:
        raise PrereqError(
            f"unknown prerequisite part(s) {sorted(unknown)}; known parts: {sorted(PARTS)}"
        )
    parts = set(need)
    if "images" in parts:
        parts.add("gobgp")
    return frozenset(parts)


def _go_step_ok(part: str, go: tuple[int, int] | None) -> str | None:
    """None when Go is good enough for ``part``, else the reason it is not."""
    want = GO_MIN_FOR[part]
    if go is None:
        return f"Go >= {want[0]}.{want[1]} is needed to build {part} and `go` is not on PATH"
    if go < want:
        return f"Go >= {want[0]}.{want[1]} is needed to build {part}; found go{go[0]}.{go[1]}"
    return None


def plan_prereqs(need: set[str] | frozenset[str], probe: Probe) -> Plan:
    """Decide what must be installed, started or built for the ``need`` parts. Pure."""
    parts = _expand(need)
    steps: list[Step] = []
    present: list[str] = []
    manual: list[str] = []

    missing = [p for p in _packages_for(parts)
               if not all(probe.has_command(c) for c in PACKAGE_COMMANDS[p])]
    if missing:
        steps.append(Step("apt-install", tuple(missing), "commands not found: " + ", ".join(
            c for p in missing for c in PACKAGE_COMMANDS[p] if not probe.has_command(c))))
        manual.append("packages " + ", ".join(missing)
                      + " (commands " + ", ".join(c for p in missing for c in PACKAGE_COMMANDS[p]) + ")")
    if "docker" in parts:
        if probe.docker_running():
            present.append("docker engine")
        else:
            steps.append(Step("start-dockerd", (), "`docker info` fails"))
            manual.append("a running Docker engine (`dockerd`)")

    go = probe.go_version()
    if "containerlab" in parts:
        have = probe.containerlab_version()
        patched = f"{CONTAINERLAB_VERSION}+{CLAB_PATCH_MARK}"
        ok = {patched} if not probe.kernel_lists_modules() else {CONTAINERLAB_VERSION, patched}
        if have in ok:
            present.append(f"containerlab {have}")
        else:
            problem = _go_step_ok("containerlab", go)
            if problem:
                raise PrereqError(f"containerlab {CONTAINERLAB_VERSION} is missing (found "
                                  f"{have or 'none'}) and cannot be built: {problem}. Install Go "
                                  f"{GO_MIN_FOR['containerlab'][0]}.{GO_MIN_FOR['containerlab'][1]}+"
                                  " and run again, or put containerlab "
                                  f"{CONTAINERLAB_VERSION} at {CONTAINERLAB_BIN}.")
            want = min(ok, key=len)  # the plain release where the kernel allows it
            why = f"found {have or 'no containerlab'}"
            if want == patched:
                why += "; /proc/modules is missing, so it needs the build-time fix"
            steps.append(Step("build-containerlab", (want,), why))
    if "gobgp" in parts:
        found = {c: probe.gobgp_version(c) for c in GOBGP_COMMANDS}
        wrong = [c for c, v in found.items() if v != GOBGP_VERSION]
        if not wrong:
            present.append(f"gobgp {GOBGP_VERSION}")
        else:
            problem = _go_step_ok("gobgp", go)
            if problem:
                raise PrereqError(f"GoBGP {GOBGP_VERSION} ({', '.join(wrong)}) is missing and "
                                  f"cannot be built: {problem}. Install Go and run again, or put "
                                  f"gobgpd/gobgp {GOBGP_VERSION} in {bin_dir()}.")
            steps.append(Step("build-gobgp", GOBGP_COMMANDS,
                              ", ".join(f"{c}: {found[c] or 'missing'}" for c in wrong)))

    if "cilium" in parts:
        missing_bins = probe.cilium_binaries_missing()
        if not missing_bins:
            present.append("the Cilium fidelity's Go binaries")
        elif go is None:
            raise PrereqError("the Cilium fidelity's Go binaries are not built and `go` is not on PATH; install Go "
                              "1.25 or later, or use `lab.fidelity: twin` (no Go builds)")
        else:
            steps.append(Step("build-cilium", tuple(missing_bins), "not built yet (about 8 min on 2 cores, once)"))

    system_steps = [s for s in steps if s.kind in ("apt-install", "start-dockerd")]
    if system_steps and not probe.has_apt():
        raise PrereqError(
            "this system has no apt-get, so the lab cannot install its prerequisites itself. "
            "Install by hand: " + "; ".join(manual)
            + ". Then run again (the lab only automates Debian/Ubuntu).")
    return Plan(tuple(steps), tuple(present))


def describe(plan: Plan) -> list[str]:
    """Human lines for a plan (what ``ensure_prereqs`` will do)."""
    lines = []
    for s in plan.steps:
        if s.kind == "apt-install":
            lines.append(f"install Debian packages {' '.join(s.items)} ({s.why})")
        elif s.kind == "start-dockerd":
            lines.append(f"start dockerd, log in {dockerd_log_path()} ({s.why})")
        elif s.kind == "build-containerlab":
            lines.append(f"build containerlab {s.items[0]} into {CONTAINERLAB_BIN} ({s.why})")
        elif s.kind == "build-cilium":
            lines.append(f"build {', '.join(s.items)} with Go ({s.why})")
        elif s.kind == "build-gobgp":
            lines.append(f"build gobgpd/gobgp {GOBGP_VERSION} into {bin_dir()} ({s.why})")
    return lines


# ---------------------------------------------------------------- probing the real machine


def _run(argv: list[str], timeout: float = 30.0, env: dict[str, str] | None = None,
         cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
                          stdin=subprocess.DEVNULL, check=False)


def _version_from(argv: list[str], pattern: str, env: dict[str, str] | None = None) -> str | None:
    if not shutil.which(argv[0]) and not Path(argv[0]).is_file():
        return None
    try:
        out = _run(argv, timeout=20, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(pattern, out.stdout + out.stderr, re.MULTILINE)
    return m.group(1) if (out.returncode == 0 and m) else None


def _clab_env() -> dict[str, str]:
    return {**os.environ, "CLAB_VERSION_CHECK": "disable"}


def containerlab_version_of(binary: Path) -> str | None:
    """"0.79.0", "0.79.0+procmodules-optional" for our fixed build, or None."""
    version = _version_from([str(binary), "version"], r"^\s*version:\s*v?(\S+)", env=_clab_env())
    if version is None:
        return None
    commit = _version_from([str(binary), "version"], r"^\s*commit:\s*(\S+)", env=_clab_env())
    return f"{version}+{CLAB_PATCH_MARK}" if commit and commit.endswith(CLAB_PATCH_MARK) else version


class SystemProbe:
    """Probe of this machine."""

    def has_apt(self) -> bool:
        return shutil.which("apt-get") is not None

    def has_command(self, name: str) -> bool:
        return shutil.which(name) is not None or any(
            (Path(d) / name).is_file() for d in ("/usr/sbin", "/sbin", "/usr/bin"))

    def docker_running(self) -> bool:
        if not shutil.which("docker"):
            return False
        try:
            return _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=15).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def containerlab_version(self) -> str | None:
        return containerlab_version_of(CONTAINERLAB_BIN)

    def kernel_lists_modules(self) -> bool:
        return Path("/proc/modules").exists()

    def gobgp_version(self, command: str) -> str | None:
        return _version_from([str(bin_dir() / command), "--version"], r"version\s+v?(\d+\.\d+\.\d+)")

    def cilium_binaries_missing(self) -> list[str]:
        return [n for n, (path, _) in binary_identities(list(BINARIES)).items() if not path.is_file()]

    def go_version(self) -> tuple[int, int] | None:
        v = _version_from(["go", "version"], r"go(\d+\.\d+)")
        if v is None:
            return None
        major, minor = v.split(".")
        return int(major), int(minor)


# ---------------------------------------------------------------- doing


def _check(proc: subprocess.CompletedProcess[str], what: str, fix: str) -> None:
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise PrereqError(f"{what} failed (exit {proc.returncode}). {fix}\n{tail}")


def _apt_install(packages: tuple[str, ...], log: Log) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log("prereqs: apt-get update")
    _check(_run(["apt-get", "update"], timeout=600, env=env), "apt-get update",
           "Check the machine's apt sources and network.")
    log(f"prereqs: apt-get install {' '.join(packages)}")
    _check(_run(["apt-get", "install", "-y", "--no-install-recommends", *packages], timeout=1200,
                env=env), f"apt-get install {' '.join(packages)}", "See apt's output above.")


def _dockerd_pid_alive() -> int | None:
    """PID of a dockerd that already runs (maybe still starting), from its pid file."""
    try:
        pid = int(Path("/var/run/docker.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    comm = Path(f"/proc/{pid}/comm")
    return pid if comm.is_file() and comm.read_text().strip() == "dockerd" else None


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.5,
               abort: Callable[[], str | None] = lambda: None) -> bool:
    """Poll ``condition`` until it holds (True) or the deadline passes (False).

    ``abort`` returning a message stops the wait early with PrereqError.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        reason = abort()
        if reason:
            raise PrereqError(reason)
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(interval_s, max(0.0, deadline - time.monotonic())))


def _start_dockerd(probe: Probe, log: Log) -> None:
    logfile = dockerd_log_path()
    logfile.parent.mkdir(parents=True, exist_ok=True)
    proc: subprocess.Popen[bytes] | None = None
    running = _dockerd_pid_alive()
    if running:
        log(f"prereqs: dockerd (pid {running}) is starting; waiting for `docker info`")
    else:
        log(f"prereqs: starting dockerd (log: {logfile})")
        with open(logfile, "ab") as out:
            proc = subprocess.Popen(["dockerd"], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def died() -> str | None:
        if proc is not None and proc.poll() is not None:
            return (f"dockerd exited with code {proc.returncode} while starting. "
                    f"Last lines of {logfile}:\n{_log_tail(logfile)}")
        return None

    t0 = time.monotonic()
    if not wait_until(probe.docker_running, DOCKER_START_TIMEOUT_S, abort=died):
        raise PrereqError(f"Docker engine did not answer `docker info` within "
                          f"{DOCKER_START_TIMEOUT_S:.0f} s. Last lines of {logfile}:\n"
                          f"{_log_tail(logfile)}")
    log(f"prereqs: docker engine up after {time.monotonic() - t0:.1f} s")


def _go_env(gobin: Path | None = None) -> dict[str, str]:
    return go_env(GOBIN=str(gobin)) if gobin is not None else go_env()


def _module_dir(module: str, version: str) -> Path:
    return Path(download(module, version)["Dir"])


def _build_in_module(module: str, version: str, packages: dict[str, str], out_dir: Path,
                     ldflags: str, log: Log, fix: Callable[[Path], None] | None = None) -> None:
    """``go build`` each package (binary name -> package path) of the downloaded module.

    With ``fix``, the module's source is first copied to a scratch folder (Go refuses to build
    changed files inside the module cache) and ``fix`` is applied to the copy.
    """
    mod_dir = _module_dir(module, version)
    with tempfile.TemporaryDirectory(prefix="k3s-bgp-lab-src-") as scratch:
        if fix is not None:
            src = Path(scratch) / "src"
            shutil.copytree(mod_dir, src)
            for p in [src, *src.rglob("*")]:
                if not p.is_symlink():
                    p.chmod(p.stat().st_mode | 0o200)
            fix(src)
            mod_dir = src
        env = {**_go_env(), "GOFLAGS": "-mod=mod"}
        for name, pkg in packages.items():
            log(f"prereqs:   go build {name} in {mod_dir}" + (" (with the fix)" if fix else ""))
            _check(_run(["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(out_dir / name),
                         pkg], timeout=1800, env=env, cwd=mod_dir),
                   f"go build {module}@{version} {pkg}", "See the compiler output below.")


def _fix_proc_modules(src: Path) -> None:
    """Apply the /proc/modules fix to a writable copy of containerlab's source."""
    target = src / CLAB_PATCH_FILE
    text = target.read_text()
    if text.count(CLAB_PATCH_OLD) != 1:
        raise PrereqError(f"cannot apply the /proc/modules fix: {CLAB_PATCH_FILE} does not contain "
                          f"the expected code once; the fix was written for containerlab "
                          f"{CONTAINERLAB_VERSION}")
    target.write_text(text.replace(CLAB_PATCH_OLD, CLAB_PATCH_NEW))


def _go_install(targets: list[str], gobin: Path, ldflags: str = "-s -w") -> subprocess.CompletedProcess[str]:
    return _run(["go", "install", "-trimpath", "-ldflags", ldflags, *targets], timeout=1800,
                env=_go_env(gobin))


def _build_containerlab(want: str, log: Log) -> None:
    """Build containerlab into CONTAINERLAB_BIN; ``want`` is a version from plan_prereqs."""
    t0 = time.monotonic()
    patch = want.endswith("+" + CLAB_PATCH_MARK)
    CONTAINERLAB_BIN.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CONTAINERLAB_BIN.parent, prefix=".clab-build-") as tmp:
        out = Path(tmp)
        commit = f"v{CONTAINERLAB_VERSION}" + (f"+{CLAB_PATCH_MARK}" if patch else "")
        ldflags = (f"-s -w -X {CONTAINERLAB_MODULE}/cmd.Version={CONTAINERLAB_VERSION}"
                   f" -X {CONTAINERLAB_MODULE}/cmd.commit={commit}"
                   f" -X {CONTAINERLAB_MODULE}/cmd.date=module")
        if patch:
            _build_in_module(CONTAINERLAB_MODULE, f"v{CONTAINERLAB_VERSION}", {"containerlab": "."},
                             out, ldflags, log, fix=_fix_proc_modules)
        else:
            log(f"prereqs: go install {CONTAINERLAB_MODULE}@v{CONTAINERLAB_VERSION}")
            proc = _go_install([f"{CONTAINERLAB_MODULE}@v{CONTAINERLAB_VERSION}"], out, ldflags)
            if proc.returncode != 0:
                first = (proc.stderr.strip().splitlines() or ["?"])[0]
                log(f"prereqs:   go install failed (...{first[-120:]}); building from `go mod download`")
                _build_in_module(CONTAINERLAB_MODULE, f"v{CONTAINERLAB_VERSION}",
                                 {"containerlab": "."}, out, ldflags, log)
        got = containerlab_version_of(out / "containerlab")
        if got != want:
            raise PrereqError(f"built containerlab reports version {got!r}, expected {want}")
        os.replace(out / "containerlab", CONTAINERLAB_BIN)
    log(f"prereqs: containerlab {want} -> {CONTAINERLAB_BIN} ({time.monotonic() - t0:.0f} s)")


def _build_gobgp(log: Log) -> None:
    t0 = time.monotonic()
    dest = bin_dir()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".gobgp-build-") as tmp:
        out = Path(tmp)
        targets = [f"{GOBGP_MODULE}/cmd/{c}@v{GOBGP_VERSION}" for c in GOBGP_COMMANDS]
        log(f"prereqs: go install {' '.join(targets)}")
        proc = _go_install(targets, out)
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or ["?"])[0]
            log(f"prereqs:   go install failed (...{first[-120:]}); building from `go mod download`")
            _build_in_module(GOBGP_MODULE, f"v{GOBGP_VERSION}",
                             {c: f"./cmd/{c}" for c in GOBGP_COMMANDS}, out, "-s -w", log)
        for c in GOBGP_COMMANDS:
            got = _version_from([str(out / c), "--version"], r"version\s+v?(\d+\.\d+\.\d+)")
            if got != GOBGP_VERSION:
                raise PrereqError(f"built {c} reports version {got!r}, expected {GOBGP_VERSION}")
        for c in GOBGP_COMMANDS:
            os.replace(out / c, dest / c)
    log(f"prereqs: gobgpd/gobgp {GOBGP_VERSION} -> {dest} ({time.monotonic() - t0:.0f} s)")


def _machine_lock():
    """Serialize prerequisite work between processes of this project on one machine."""
    return file_lock(cache_dir() / "prereqs.lock")


def run_plan(plan: Plan, probe: Probe, log: Log = print) -> None:
    """Carry out a plan from ``plan_prereqs``."""
    for step in plan.steps:
        if step.kind == "apt-install":
            _apt_install(step.items, log)
        elif step.kind == "start-dockerd":
            _start_dockerd(probe, log)
        elif step.kind == "build-containerlab":
            _build_containerlab(step.items[0], log)
        elif step.kind == "build-cilium":
            ensure_binaries(list(step.items), log)
        elif step.kind == "build-gobgp":
            _build_gobgp(log)
        else:  # pragma: no cover - plan_prereqs makes only the kinds above
            raise PrereqError(f"unknown step {step.kind}")


def ensure_prereqs(need: set[str], log: Log = print, probe: Probe | None = None) -> None:
    """Make sure the ``need`` parts are present; install/start/build what is missing.

    Idempotent. Prints each action; when nothing is missing prints one line of what is present.
    Raises PrereqError with what to do by hand when the machine cannot be set up automatically.
    """
    probe = probe or SystemProbe()
    with _machine_lock():
        plan = plan_prereqs(need, probe)
        if plan.empty:
            log("prereqs: ok (" + ", ".join(plan.present or ("nothing to check",)) + ")")
            return
        for line in describe(plan):
            log(f"prereqs: will {line}")
        t0 = time.monotonic()
        run_plan(plan, probe, log)
        after = plan_prereqs(need, probe)
        if not after.empty:
            raise PrereqError("still missing after setup: " + "; ".join(describe(after)))
        log(f"prereqs: done in {time.monotonic() - t0:.0f} s")
