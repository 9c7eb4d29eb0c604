"""Offline lab images: one Debian base per suite, each image's packages added with apt, ``docker import``.

No image is pulled. An image is tagged by its content, ``k3s-bgp-lab/<name>:<hash>``, where the
hash covers the Debian suite, the sorted package list, every extra file (destination, mode,
sha256), the docker ``changes`` and ``RECIPE_VERSION``. A tag that exists is never rebuilt; when an
input changes the tag changes and the image is built anew.

How a missing image is built (times in BENCHMARKS.md):

1. **The suite's base**, once per suite and recipe: ``debootstrap --variant=minbase``, cached as
   ``<cache>/rootfs/<suite>-base-<key>.tar`` (with apt's package lists, without the .debs).
2. **The image's root filesystem**: the base unpacked into a fresh folder, then ``apt-get install
   --no-install-recommends`` of the image's packages in a chroot of it (no service starts: a
   ``policy-rc.d`` says no while it runs), package caches and documentation removed, cached as
   ``<cache>/rootfs/<suite>-<key>.tar`` where the key covers suite, packages and recipe version. The
   base depends on nothing but the suite, so an image's content never depends on which other images
   were built with it.
3. The extra files appended to a copy of that tarball, and ``docker import``. Changing only an extra
   file (e.g. a rebuilt gobgpd) re-imports in seconds.

:func:`ensure_images` builds the missing images in parallel, up to one per core
(``$K3S_BGP_LAB_IMAGE_JOBS`` overrides), each waiting for its suite's base when that is being built.
Downloaded .debs are kept per suite in ``<cache>/debs/<suite>``, so an image downloads only what no
earlier build of that suite did. Every cache entry is built under a lock (two processes, or two
threads, never build the same base or root filesystem at once; the second waits and then takes the
cached result), written atomically, and a failed or interrupted build leaves nothing in the cache.
Long steps report their phase with an estimate: the time the same step took last on this machine
(``<cache>/image-timings.json``), or a first guess measured on a 2-core machine.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

from generators.errors import EnvironmentProblem
from generators.gomod import cache_dir
from generators.lab.prereqs import ensure_prereqs

Log = Callable[[str], None]

# Bump when the way a rootfs is built changes (base + apt, debootstrap flags, cleanup, tar options).
RECIPE_VERSION = "2"
TAG_PREFIX = "k3s-bgp-lab"
DEBOOTSTRAP_TIMEOUT_S = 1800
APT_TIMEOUT_S = 1800
JOBS_ENV = "K3S_BGP_LAB_IMAGE_JOBS"
HEARTBEAT_S = 15.0  # a long phase says it is still running this often (when its tool prints anything)
LOCK_POLL_S = 0.2
# Estimates for a machine that has not built a step yet: measured on the 2-core machine of BENCHMARKS.md
# (a bookworm base with an empty .deb cache; one image's packages on it).
FIRST_GUESS_S = {"base": 25.0, "packages": 12.0}

# Removed from every rootfs: package caches, documentation and logs (Docker provides /dev, /proc, /sys).
CLEANUP_GLOBS = ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*",
                 "usr/share/doc/*", "usr/share/man/*", "usr/share/info/*", "var/log/*.log",
                 "var/log/apt/*", "debootstrap")
# Containers get their command from the lab runtime (containerlab `cmd:`); this default only makes
# a bare `docker run IMAGE` idle instead of failing for lack of a command.
# PID 1 must reap orphans (FRR's watchfrr, restarted stand-ins), or `frrinit.sh stop` waits on a zombie
IDLE_CHANGES = ('CMD ["/usr/bin/tini", "--", "sleep", "infinity"]',)
TAR_EXCLUDES = ("./dev/*", "./proc/*", "./sys/*", "./run/*", "./tmp/*")
# The base keeps /dev's nodes: apt and maintainer scripts in the chroot write to /dev/null.
BASE_TAR_EXCLUDES = ("./proc/*", "./sys/*")
# dpkg without fsync while an image is built (about 15 % faster here); removed before the image is packed.
# A build that dies half way is thrown away whole, so nothing depends on what fsync would have kept.
UNSAFE_IO_CFG = "etc/dpkg/dpkg.cfg.d/k3s-bgp-lab-unsafe-io"
POLICY_RC_D = "usr/sbin/policy-rc.d"
CHROOT_ENV = ("PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")


class ImageError(EnvironmentProblem):
    """An image cannot be specified or built; the message says why and what to do."""


class ImageBuildStopped(ImageError):
    """The build was stopped (an interrupt, or another image's build failed to stop in time)."""


# ---------------------------------------------------------------- specs (pure)


@dataclass(frozen=True)
class ExtraFile:
    """A file from this machine copied into the image at ``dest`` (absolute) with ``mode``."""

    dest: str
    source: Path
    mode: int = 0o755
    # What the file is, when that is pinned (e.g. "gobgpd github.com/osrg/gobgp/v3@v3.37.0"). The tag
    # then hashes this instead of the bytes, so a lab topology can name its images on a machine that
    # has not built them yet (rendering stays pure); the build itself is reproducible (same bytes).
    identity: str = ""

    def fingerprint(self) -> str:
        return self.identity or self.sha256()

    def sha256(self) -> str:
        try:
            return hashlib.sha256(self.source.read_bytes()).hexdigest()
        except OSError as exc:
            raise ImageError(f"extra file {self.source} for {self.dest} cannot be read ({exc}); "
                             "run ensure_prereqs({'images'}) to build the GoBGP binaries") from exc


@dataclass(frozen=True)
class ImageSpec:
    """What goes into one lab image."""

    name: str
    suite: str
    packages: tuple[str, ...]
    extra_files: tuple[ExtraFile, ...] = ()
    changes: tuple[str, ...] = ()  # docker import --change lines (ENV, CMD, LABEL, ...)
    note: str = ""  # why this suite (shown in logs and labels)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", self.name):
            raise ImageError(f"image name {self.name!r}: use lower-case letters, digits, . _ -")
        if not re.fullmatch(r"[a-z]+", self.suite):
            raise ImageError(f"Debian suite {self.suite!r} is not a suite name like bookworm")
        for f in self.extra_files:
            if not f.dest.startswith("/"):
                raise ImageError(f"extra file destination {f.dest!r} must be absolute")


def rootfs_key(spec: ImageSpec) -> str:
    """Key of an image's root filesystem: suite, sorted packages, recipe version."""
    blob = json.dumps({"recipe": RECIPE_VERSION, "suite": spec.suite,
                       "packages": sorted(set(spec.packages))}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def base_key(suite: str) -> str:
    """Key of a suite's base: the suite and the recipe version, nothing of any image."""
    blob = json.dumps({"recipe": RECIPE_VERSION, "suite": suite, "base": "minbase"}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def content_hash(spec: ImageSpec) -> str:
    """Hash of everything that ends up in the image (reads the extra files)."""
    blob = json.dumps({
        "recipe": RECIPE_VERSION,
        "suite": spec.suite,
        "packages": sorted(set(spec.packages)),
        "files": sorted([f.dest, f.mode, f.fingerprint()] for f in spec.extra_files),
        "changes": list(spec.changes),
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def image_tag(spec: ImageSpec) -> str:
    return f"{TAG_PREFIX}/{spec.name}:{content_hash(spec)}"


def build_jobs(missing: int) -> int:
    """How many images to build at once: one per core (``$K3S_BGP_LAB_IMAGE_JOBS``), at most ``missing``."""
    raw = os.environ.get(JOBS_ENV, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ImageError(f"${JOBS_ENV}={raw!r}: give the number of images to build at once (1 or more)")
        jobs = int(raw)
    else:
        jobs = os.cpu_count() or 1
    return max(1, min(jobs, missing))


# ---------------------------------------------------------------- cache paths, locks, timings


class ImageEngine(Protocol):
    def image_exists(self, tag: str) -> bool: ...

    def import_rootfs(self, tar_path: Path, tag: str, changes: list[str] | tuple[str, ...] = ()) -> str: ...


def rootfs_cache_path(spec: ImageSpec) -> Path:
    return cache_dir() / "rootfs" / f"{spec.suite}-{rootfs_key(spec)}.tar"


def base_cache_path(suite: str) -> Path:
    return cache_dir() / "rootfs" / f"{suite}-base-{base_key(suite)}.tar"


def debs_dir(suite: str) -> Path:
    """Downloaded .debs of ``suite`` (one folder per suite: the same file name is the same package)."""
    path = cache_dir() / "debs" / suite
    path.mkdir(parents=True, exist_ok=True)
    return path


class _Builds:
    """The child processes of this process's image builds, so that one interrupt stops them all."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._procs: set[subprocess.Popen] = set()
        self._guard = threading.Lock()

    def check(self) -> None:
        if self.stopping.is_set():
            raise ImageBuildStopped("image build stopped")

    def add(self, proc: subprocess.Popen) -> None:
        with self._guard:
            self._procs.add(proc)

    def discard(self, proc: subprocess.Popen) -> None:
        with self._guard:
            self._procs.discard(proc)

    def stop_all(self) -> None:
        self.stopping.set()
        with self._guard:
            procs = list(self._procs)
        for proc in procs:
            _kill_group(proc)


_BUILDS = _Builds()
_IMPORT_LOCK = threading.Lock()  # one `docker import` at a time from this process
_TIMINGS_LOCK = threading.Lock()


def _kill_group(proc: subprocess.Popen) -> None:
    """The tool and its children (dpkg, wget, apt's methods) go together."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@contextmanager
def _lock(name: str, log: Log | None = None, label: str = "") -> Iterator[None]:
    """An exclusive lock between processes and threads (flock on a file of its own per holder).

    Waiting polls, so that an interrupt stops a build that waits for another one.
    """
    path = cache_dir() / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        told = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if log is not None and not told:
                    log(f"{label}: waiting while another build makes it")
                    told = True
                _BUILDS.check()
                time.sleep(LOCK_POLL_S)  # poll interval of the lock, not a wait standing in for it
        try:
            _BUILDS.check()  # stopped while it waited: do not start what the holder was stopped in
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _timings_path() -> Path:
    return cache_dir() / "image-timings.json"


def _read_timings() -> dict[str, float]:
    try:
        data = json.loads(_timings_path().read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float))} if isinstance(data, dict) else {}


def _expected_s(step: str) -> tuple[float, bool]:
    """(seconds ``step`` is expected to take, whether that was measured on this machine)."""
    known = _read_timings().get(step)
    return (known, True) if known else (FIRST_GUESS_S[step.split(":", 1)[0]], False)


def _record_s(step: str, seconds: float) -> None:
    with _TIMINGS_LOCK:
        timings = _read_timings()
        timings[step] = round(seconds, 1)
        path = _timings_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
        try:
            partial.write_text(json.dumps(timings, indent=1, sort_keys=True) + "\n")
            os.replace(partial, path)
        except OSError:
            partial.unlink(missing_ok=True)  # an estimate is a nicety: never fail a build for it


class _Progress:
    """Phase lines of one long step, each with the time so far and an estimate of what is left."""

    def __init__(self, log: Log, label: str, step: str) -> None:
        self.log, self.label = log, label
        self.expected, self.measured = _expected_s(step)
        self.t0 = self.last = time.monotonic()
        self.counts: dict[str, int] = {}
        self.total = 0  # packages the step will set up, once the tool has said

    def estimate(self) -> str:
        how = "as the last build here" if self.measured else "a first guess"
        return f"about {self.expected:.0f} s, {how}"

    def left(self) -> str:
        rest = self.expected - (time.monotonic() - self.t0)
        return f"about {rest:.0f} s left" if rest >= 1 else "longer than estimated"

    def see(self, phase: str) -> None:
        """A line of ``phase``: said when the phase first comes (tools go back and forth between unpacking
        and configuring), then every HEARTBEAT_S while the step runs."""
        now = time.monotonic()
        first = phase not in self.counts
        self.counts[phase] = self.counts.get(phase, 0) + 1
        if not first and now - self.last < HEARTBEAT_S:
            return
        done = self.counts[phase]
        count = f" {done}/{self.total}" if self.total and phase in ("unpacking", "configuring") else ""
        self.log(f"{self.label}:   {phase}{count} (+{now - self.t0:.0f} s, {self.left()})")
        self.last = now

    def seconds(self) -> float:
        return time.monotonic() - self.t0


# ---------------------------------------------------------------- running the tools


def _run_step(argv: list[str], progress: _Progress, phases: tuple[tuple[str, str], ...], timeout: float,
              what: str, on_line: Callable[[str], None] | None = None) -> tuple[int, list[str]]:
    """Run one build tool, following its phases; returns (exit code, the last lines it printed).

    Raises ImageError when it runs past ``timeout`` (then it and its children are killed), and
    ImageBuildStopped when the builds were stopped meanwhile.
    """
    _BUILDS.check()
    tail: deque[str] = deque(maxlen=30)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", start_new_session=True)
    assert proc.stdout is not None
    _BUILDS.add(proc)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        _kill_group(proc)

    watchdog = threading.Timer(timeout, expire)  # deadline for the whole run
    watchdog.start()
    try:
        for line in proc.stdout:
            tail.append(line.rstrip())
            if on_line is not None:
                on_line(line)
            for prefix, name in phases:
                if line.startswith(prefix):
                    progress.see(name)
                    break
        code = proc.wait()
    except BaseException:  # an interrupt in this thread: the tool must not outlive us
        _kill_group(proc)
        proc.wait()
        raise
    finally:
        watchdog.cancel()
        _BUILDS.discard(proc)
    _BUILDS.check()
    if expired.is_set():
        raise ImageError(f"{what} took over {timeout} s and was stopped; check the network to "
                         "Debian's package archive")
    return code, list(tail)


_DEBOOTSTRAP_PHASES = (("I: Retrieving ", "downloading packages"), ("I: Extracting ", "extracting"),
                       ("I: Installing core", "installing core packages"), ("I: Unpacking ", "unpacking"),
                       ("I: Configuring ", "configuring"), ("I: Base system installed", "base system installed"))
_APT_PHASES = (("Get:", "downloading packages"), ("Unpacking ", "unpacking"), ("Setting up ", "configuring"))
_APT_TOTAL = re.compile(r"^(\d+) upgraded, (\d+) newly installed")
_APT_STALE = ("Failed to fetch", "Unable to fetch some archives", "404  Not Found")


def _files(n: int) -> str:
    return f"{n} file{'' if n == 1 else 's'}"


def _suite_hint(spec: ImageSpec) -> str:
    return (f" Debian {spec.suite} may no longer be reachable here ({spec.note})."
            if spec.suite != "bookworm" else "")


def _run_debootstrap(spec: ImageSpec, target: Path, log: Log, label: str = "") -> None:
    """``debootstrap --variant=minbase`` of ``spec``'s suite (and packages) into ``target``."""
    label = label or f"image {spec.name}"
    debs = debs_dir(spec.suite)
    pkgs = sorted(set(spec.packages))
    argv = ["debootstrap", "--variant=minbase", *([f"--include={','.join(pkgs)}"] if pkgs else []),
            f"--cache-dir={debs}", spec.suite, str(target)]
    unsafe_io = target / UNSAFE_IO_CFG  # dpkg inside debootstrap reads it (the target's own dpkg.cfg.d)
    unsafe_io.parent.mkdir(parents=True, exist_ok=True)
    unsafe_io.write_text("force-unsafe-io\n")
    progress = _Progress(log, label, f"base:{spec.suite}")
    log(f"{label}: debootstrap {spec.suite}" + (f" + {', '.join(pkgs)}" if pkgs else " (minbase)")
        + f" ({progress.estimate()})")
    code, tail = _run_step(argv, progress, _DEBOOTSTRAP_PHASES, DEBOOTSTRAP_TIMEOUT_S,
                           f"debootstrap {spec.suite} for {spec.name}")
    unsafe_io.unlink(missing_ok=True)
    if code != 0:
        detail = "\n".join(tail)
        inner = target / "debootstrap" / "debootstrap.log"
        if inner.is_file():
            detail += "\n--- debootstrap.log (tail) ---\n" + "\n".join(
                inner.read_text(errors="replace").splitlines()[-20:])
        raise ImageError(f"debootstrap {spec.suite} for image {spec.name} failed (exit {code}).{_suite_hint(spec)}"
                         f"\n{detail}")
    _record_s(f"base:{spec.suite}", progress.seconds())
    log(f"{label}:   debootstrap done in {progress.seconds():.0f} s "
        f"({_files(progress.counts.get('downloading packages', 0))} downloaded, the rest from {debs})")


def _link_debs(source: Path, dest: Path) -> int:
    """Offer every cached .deb to apt (hard links when on one file system); returns how many."""
    dest.mkdir(parents=True, exist_ok=True)
    n = 0
    for deb in source.glob("*.deb"):
        target = dest / deb.name
        if not target.exists():
            try:
                os.link(deb, target)
            except OSError:
                shutil.copy2(deb, target)
        n += 1
    return n


def _save_debs(source: Path, cache: Path) -> int:
    """Keep what apt downloaded for the next build of the suite (atomically); returns how many were new."""
    n = 0
    for deb in source.glob("*.deb"):
        final = cache / deb.name
        if final.exists():
            continue
        partial = cache / f".{deb.name}.{os.getpid()}.{threading.get_ident()}.partial"
        try:
            os.link(deb, partial)
        except OSError:
            shutil.copy2(deb, partial)
        os.replace(partial, final)
        n += 1
    return n


def _install_packages(spec: ImageSpec, root: Path, log: Log) -> None:
    """``apt-get install`` of ``spec``'s packages inside ``root`` (a copy of the suite's base)."""
    pkgs = sorted(set(spec.packages))
    if not pkgs:
        return
    label = f"image {spec.name}"
    cache = debs_dir(spec.suite)
    archives = root / "var" / "cache" / "apt" / "archives"
    with _lock(f"debs-{spec.suite}"):  # not while a debootstrap of the suite writes into the cache
        offered = _link_debs(cache, archives)
    policy = root / POLICY_RC_D
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text("#!/bin/sh\n# k3s-bgp-lab: no service starts while the image is built\nexit 101\n")
    policy.chmod(0o755)
    resolv = root / "etc" / "resolv.conf"  # apt in the chroot resolves Debian's mirror as the host does
    if Path("/etc/resolv.conf").is_file():
        resolv.parent.mkdir(parents=True, exist_ok=True)
        resolv.unlink(missing_ok=True)
        shutil.copyfile("/etc/resolv.conf", resolv)
    progress = _Progress(log, label, f"packages:{spec.name}")

    def totals(line: str) -> None:
        m = _APT_TOTAL.match(line)
        if m:
            progress.total = int(m.group(1)) + int(m.group(2))

    def apt(*args: str) -> tuple[int, list[str]]:
        argv = ["chroot", str(root), "/usr/bin/env", "-i", *CHROOT_ENV, "apt-get", "-o", "Dpkg::Use-Pty=0",
                "-o", "Dpkg::Options::=--force-unsafe-io", "-o", "APT::Keep-Downloaded-Packages=true", *args]
        return _run_step(argv, progress, _APT_PHASES, APT_TIMEOUT_S,
                         f"apt-get {args[0]} in the {spec.suite} base for {spec.name}", on_line=totals)

    log(f"{label}: apt-get install {', '.join(pkgs)} on the {spec.suite} base "
        f"({offered} .debs cached; {progress.estimate()})")
    install = ("install", "-y", "--no-install-recommends", *pkgs)
    code, tail = apt(*install)
    if code != 0 and any(s in line for line in tail for s in _APT_STALE):
        # the base's package lists predate a Debian point release: its .debs are gone from the mirror
        log(f"{label}:   the {spec.suite} base's package lists are out of date: apt-get update")
        code, tail = apt("update")
        if code == 0:
            code, tail = apt(*install)
    if code != 0:
        raise ImageError(f"apt-get install {' '.join(pkgs)} in the {spec.suite} base for image {spec.name} failed "
                         f"(exit {code}).{_suite_hint(spec)}\n" + "\n".join(tail))
    _save_debs(archives, cache)
    policy.unlink()
    (root / UNSAFE_IO_CFG).unlink(missing_ok=True)
    _record_s(f"packages:{spec.name}", progress.seconds())
    log(f"{label}:   packages installed in {progress.seconds():.0f} s "
        f"({_files(progress.counts.get('downloading packages', 0))} downloaded)")


def _cleanup_rootfs(root: Path) -> None:
    for pattern in CLEANUP_GLOBS:
        for p in root.glob(pattern):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)


def _tar_dir(root: Path, out: Path, excludes: tuple[str, ...] = TAR_EXCLUDES) -> None:
    argv = ["tar", "--numeric-owner", "--one-file-system", "-C", str(root)]
    argv += [f"--exclude={x}" for x in excludes]
    argv += ["-cf", str(out), "."]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ImageError(f"tar of {root} failed: {proc.stderr.strip()[-800:]}")


def _untar(tar_path: Path, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["tar", "--numeric-owner", "-xpf", str(tar_path), "-C", str(root)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ImageError(f"unpacking {tar_path} failed: {proc.stderr.strip()[-800:]}; delete it to rebuild it")


def _pack(root: Path, out: Path, excludes: tuple[str, ...] = TAR_EXCLUDES) -> float:
    """Tar ``root`` into the cache file ``out`` atomically (the cache holds complete tarballs only)."""
    t0 = time.monotonic()
    partial = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        _tar_dir(root, partial, excludes)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return time.monotonic() - t0


def _mounts_under(path: Path) -> list[str]:
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    prefix = str(path.resolve()) + "/"
    points = [ln.split()[1].replace("\\040", " ") for ln in lines if len(ln.split()) > 1]
    return sorted((m for m in points if m.startswith(prefix)), key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """Remove a build folder, first detaching anything debootstrap left mounted in it."""
    for mount in _mounts_under(path):
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
    if _mounts_under(path):
        raise ImageError(f"cannot unmount {_mounts_under(path)}; remove {path} by hand")
    shutil.rmtree(path, ignore_errors=True)


def _work_dir(stem: str) -> Path:
    """A fresh build folder; folders of builds whose process is gone are removed first."""
    base = cache_dir() / "work"
    base.mkdir(parents=True, exist_ok=True)
    for old in base.iterdir():
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _remove_tree(old)
    work = base / f"{stem}-{os.getpid()}"
    _remove_tree(work)
    work.mkdir()
    return work


# ---------------------------------------------------------------- base, root filesystem, image


def ensure_base(spec: ImageSpec, log: Log) -> Path:
    """The cached base of ``spec``'s suite (debootstrap minbase, built when missing)."""
    out = base_cache_path(spec.suite)
    label = f"base {spec.suite}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with _lock(f"rootfs-{out.stem}", log, label):
        if out.is_file():
            return out
        work = _work_dir(f"base-{spec.suite}-{base_key(spec.suite)}")
        try:
            root = work / "root"
            minbase = ImageSpec(name=spec.name, suite=spec.suite, packages=(), note=spec.note)
            with _lock(f"debs-{spec.suite}"):  # one debootstrap at a time writes into the suite's .deb cache
                _run_debootstrap(minbase, root, log, label)
            for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
                deb.unlink()  # they are in the .deb cache
            shutil.rmtree(root / "debootstrap", ignore_errors=True)
            took = _pack(root, out, BASE_TAR_EXCLUDES)
            log(f"{label}:   base tarball {out.stat().st_size / 1e6:.0f} MB ({took:.0f} s)")
        finally:
            _remove_tree(work)
    return out


def ensure_rootfs(spec: ImageSpec, log: Log) -> Path:
    """The cached root filesystem tarball for ``spec`` (built on its suite's base when missing)."""
    out = rootfs_cache_path(spec)
    label = f"image {spec.name}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with _lock(f"rootfs-{out.stem}", log, label):
        if out.is_file():
            log(f"{label}: rootfs cached ({out.name}, {out.stat().st_size / 1e6:.0f} MB)")
            return out
        base = ensure_base(spec, log)
        work = _work_dir(f"{spec.name}-{rootfs_key(spec)}")
        try:
            root = work / "root"
            _BUILDS.check()
            _untar(base, root)
            _install_packages(spec, root, log)
            _cleanup_rootfs(root)
            took = _pack(root, out)
            log(f"{label}:   rootfs tarball {out.stat().st_size / 1e6:.0f} MB ({took:.0f} s)")
        finally:
            _remove_tree(work)
    return out


def _with_extras(base: Path, spec: ImageSpec, dest_dir: Path) -> Path:
    """A copy of ``base`` with the spec's extra files appended (``base`` itself when none)."""
    if not spec.extra_files:
        return base
    out = dest_dir / "image.tar"
    shutil.copyfile(base, out)
    with tarfile.open(out, "a") as tar:
        for f in spec.extra_files:
            info = tar.gettarinfo(str(f.source), arcname="." + f.dest)
            info.mode, info.uid, info.gid, info.uname, info.gname = f.mode, 0, 0, "root", "root"
            with open(f.source, "rb") as fh:
                tar.addfile(info, fh)
    return out


def ensure_image(spec: ImageSpec, engine: ImageEngine, log: Log = print) -> str:
    """Build ``spec`` unless an image with its content tag exists; returns the tag."""
    tag = image_tag(spec)
    if engine.image_exists(tag):
        log(f"image {spec.name}: present ({tag})")
        return tag
    t0 = time.monotonic()
    log(f"image {spec.name}: building {tag}" + (f" — {spec.note}" if spec.note else ""))
    rootfs = ensure_rootfs(spec, log)
    with tempfile.TemporaryDirectory(prefix=f"{spec.name}-", dir=rootfs.parent) as tmp:
        tar_path = _with_extras(rootfs, spec, Path(tmp))
        _BUILDS.check()
        with _IMPORT_LOCK:
            t1 = time.monotonic()
            engine.import_rootfs(tar_path, tag, spec.changes)  # the tag appears only when complete
        log(f"image {spec.name}:   docker import {time.monotonic() - t1:.0f} s")
    log(f"image {spec.name}: built {tag} in {time.monotonic() - t0:.0f} s")
    return tag


def _serialized(log: Log) -> Log:
    guard = threading.Lock()

    def say(msg: str) -> None:
        with guard:
            log(msg)

    return say


def _build_all(specs: list[ImageSpec], engine: ImageEngine, log: Log, jobs: int) -> dict[str, str]:
    """Build ``specs`` (all missing), ``jobs`` at a time; the first failure is raised once all have ended."""
    _BUILDS.stopping.clear()
    if jobs == 1:
        return {s.name: ensure_image(s, engine, log) for s in specs}
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="image-build") as pool:
        futures = [pool.submit(ensure_image, s, engine, log) for s in specs]
        try:
            wait_all(futures)
        except BaseException:  # Ctrl-C here: stop every build, let each clean its folder, then go on up
            _BUILDS.stop_all()
            wait_all(futures)
            raise
    errors = [e for f in futures if (e := f.exception()) is not None]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ImageError(f"{len(errors)} image builds failed:\n\n" + "\n\n".join(str(e) for e in errors))
    return {s.name: f.result() for s, f in zip(specs, futures, strict=True)}


def ensure_images(specs: list[ImageSpec], engine: ImageEngine, log: Log = print) -> dict[str, str]:
    """Ensure every image, building the missing ones in parallel (see the module text); name -> tag."""
    ensure_prereqs({"images"}, log)
    names = [s.name for s in specs]
    if dup := sorted({n for n in names if names.count(n) > 1}):
        raise ImageError(f"two image specs are named {dup[0]!r}")
    say = _serialized(log)
    tags: dict[str, str] = {}
    missing: list[ImageSpec] = []
    for spec in specs:
        tag = image_tag(spec)
        if engine.image_exists(tag):
            say(f"image {spec.name}: present ({tag})")
            tags[spec.name] = tag
        else:
            missing.append(spec)
    if missing:
        jobs = build_jobs(len(missing))
        if len(missing) > 1:
            suites = sorted({s.suite for s in missing})
            say(f"images: building {', '.join(s.name for s in missing)}, {jobs} at a time, on the "
                f"{'/'.join(suites)} base{'s' if len(suites) > 1 else ''}")
        tags.update(_build_all(missing, engine, say, jobs))
    return {name: tags[name] for name in names}
