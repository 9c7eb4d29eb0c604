"""Offline lab images: debootstrap (Debian's packages) + extra files + ``docker import``.

No image is pulled. An image is tagged by its content, ``k3s-bgp-lab/<name>:<hash>``, where the
hash covers the Debian suite, the sorted package list, every extra file (destination, mode,
sha256), the docker ``changes`` and ``RECIPE_VERSION``. A tag that exists is never rebuilt; when an
input changes the tag changes and the image is built anew.

The debootstrap result (before extra files) is cached as a tarball under
``<cache>/rootfs/<suite>-<key>.tar`` where the key covers suite, packages and recipe version, and
downloaded .debs are kept in ``<cache>/debs`` so another image of the same suite downloads only
what it adds. Changing only an extra file (e.g. a rebuilt gobgpd) re-imports in seconds.
"""
from __future__ import annotations

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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from generators.errors import EnvironmentProblem
from generators.gomod import cache_dir, file_lock
from generators.lab.prereqs import ensure_prereqs

Log = Callable[[str], None]

# Bump when the way a rootfs is built changes (debootstrap flags, cleanup, tar options).
RECIPE_VERSION = "1"
TAG_PREFIX = "k3s-bgp-lab"
DEBOOTSTRAP_TIMEOUT_S = 1800

# Removed from every rootfs: package caches and documentation (Docker provides /dev, /proc, /sys).
CLEANUP_GLOBS = ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*",
                 "usr/share/doc/*", "usr/share/man/*", "usr/share/info/*", "var/log/*.log",
                 "debootstrap")
# Containers get their command from the lab runtime (containerlab `cmd:`); this default only makes
# a bare `docker run IMAGE` idle instead of failing for lack of a command.
# PID 1 must reap orphans (FRR's watchfrr, restarted stand-ins), or `frrinit.sh stop` waits on a zombie
IDLE_CHANGES = ('CMD ["/usr/bin/tini", "--", "sleep", "infinity"]',)
TAR_EXCLUDES = ("./dev/*", "./proc/*", "./sys/*", "./run/*", "./tmp/*")


class ImageError(EnvironmentProblem):
    """An image cannot be specified or built; the message says why and what to do."""


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
    """Key of the debootstrap result: suite, sorted packages, recipe version."""
    blob = json.dumps({"recipe": RECIPE_VERSION, "suite": spec.suite,
                       "packages": sorted(set(spec.packages))}, sort_keys=True)
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


# ---------------------------------------------------------------- building


class ImageEngine(Protocol):
    def image_exists(self, tag: str) -> bool: ...

    def import_rootfs(self, tar_path: Path, tag: str, changes: list[str] | tuple[str, ...] = ()) -> str: ...


def rootfs_cache_path(spec: ImageSpec) -> Path:
    return cache_dir() / "rootfs" / f"{spec.suite}-{rootfs_key(spec)}.tar"


def _lock(name: str):
    return file_lock(cache_dir() / "locks" / f"{name}.lock")


_PHASES = (("I: Retrieving ", "downloading packages"), ("I: Extracting ", "extracting"),
           ("I: Installing core", "installing core packages"), ("I: Unpacking ", "unpacking"),
           ("I: Configuring ", "configuring"), ("I: Base system installed", "base system installed"))


def _run_debootstrap(spec: ImageSpec, target: Path, log: Log) -> None:
    debs = cache_dir() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(sorted(set(spec.packages)))}",
            f"--cache-dir={debs}", spec.suite, str(target)]
    log(f"image {spec.name}: debootstrap {spec.suite} + {', '.join(sorted(set(spec.packages)))}")
    t0 = time.monotonic()
    tail: deque[str] = deque(maxlen=30)
    phase, counts = "", dict[str, int]()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert proc.stdout is not None
    expired = threading.Event()

    def stop() -> None:  # debootstrap and its children (dpkg, wget) go together
        expired.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    watchdog = threading.Timer(DEBOOTSTRAP_TIMEOUT_S, stop)  # deadline for the whole run
    watchdog.start()
    try:
        for line in proc.stdout:
            tail.append(line.rstrip())
            for prefix, name in _PHASES:
                if line.startswith(prefix):
                    counts[name] = counts.get(name, 0) + 1
                    if name != phase:
                        log(f"image {spec.name}:   {name} (+{time.monotonic() - t0:.0f} s)")
                        phase = name
        code = proc.wait()
    finally:
        watchdog.cancel()
    if expired.is_set():
        raise ImageError(f"debootstrap {spec.suite} for {spec.name} took over "
                         f"{DEBOOTSTRAP_TIMEOUT_S} s and was stopped; check the network to "
                         "Debian's package archive")
    if code != 0:
        detail = "\n".join(tail)
        inner = target / "debootstrap" / "debootstrap.log"
        if inner.is_file():
            detail += "\n--- debootstrap.log (tail) ---\n" + "\n".join(
                inner.read_text(errors="replace").splitlines()[-20:])
        hint = (f" Debian {spec.suite} may no longer be reachable here ({spec.note})."
                if spec.suite != "bookworm" else "")
        raise ImageError(f"debootstrap {spec.suite} for image {spec.name} failed (exit {code}).{hint}"
                         f"\n{detail}")
    log(f"image {spec.name}:   debootstrap done in {time.monotonic() - t0:.0f} s "
        f"({counts.get('downloading packages', 0)} files downloaded, the rest from {debs})")


def _cleanup_rootfs(root: Path) -> None:
    for pattern in CLEANUP_GLOBS:
        for p in root.glob(pattern):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)


def _tar_dir(root: Path, out: Path) -> None:
    argv = ["tar", "--numeric-owner", "--one-file-system", "-C", str(root)]
    argv += [f"--exclude={x}" for x in TAR_EXCLUDES]
    argv += ["-cf", str(out), "."]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ImageError(f"tar of {root} failed: {proc.stderr.strip()[-800:]}")


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


def _work_dir(spec: ImageSpec) -> Path:
    """A fresh build folder; folders of builds whose process is gone are removed first."""
    base = cache_dir() / "work"
    base.mkdir(parents=True, exist_ok=True)
    for old in base.iterdir():
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _remove_tree(old)
    work = base / f"{spec.name}-{rootfs_key(spec)}-{os.getpid()}"
    _remove_tree(work)
    work.mkdir()
    return work


def ensure_rootfs(spec: ImageSpec, log: Log) -> Path:
    """The cached debootstrap tarball for ``spec`` (built when missing)."""
    out = rootfs_cache_path(spec)
    with _lock(f"rootfs-{out.stem}"):
        if out.is_file():
            log(f"image {spec.name}: rootfs cached ({out.name}, {out.stat().st_size / 1e6:.0f} MB)")
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        work = _work_dir(spec)
        try:
            root = work / "root"
            _run_debootstrap(spec, root, log)
            _cleanup_rootfs(root)
            t0 = time.monotonic()
            partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
            try:
                _tar_dir(root, partial)
                os.replace(partial, out)  # atomic: the cache holds complete tarballs only
            finally:
                partial.unlink(missing_ok=True)
            log(f"image {spec.name}:   rootfs tarball {out.stat().st_size / 1e6:.0f} MB "
                f"({time.monotonic() - t0:.0f} s)")
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
    base = ensure_rootfs(spec, log)
    with tempfile.TemporaryDirectory(prefix=f"{spec.name}-", dir=base.parent) as tmp:
        tar_path = _with_extras(base, spec, Path(tmp))
        t1 = time.monotonic()
        engine.import_rootfs(tar_path, tag, spec.changes)  # the tag appears only when complete
        log(f"image {spec.name}:   docker import {time.monotonic() - t1:.0f} s")
    log(f"image {spec.name}: built {tag} in {time.monotonic() - t0:.0f} s")
    return tag


def ensure_images(specs: list[ImageSpec], engine: ImageEngine, log: Log = print) -> dict[str, str]:
    """Ensure every image (building what is missing, one after another); name -> tag."""
    ensure_prereqs({"images"}, log)
    tags: dict[str, str] = {}
    for spec in specs:
        if spec.name in tags:
            raise ImageError(f"two image specs are named {spec.name!r}")
        tags[spec.name] = ensure_image(spec, engine, log)
    return tags
