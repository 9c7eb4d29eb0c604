"""The Go binaries of the Cilium fidelity, built offline from the Go module proxy and cached by content.

Three Go modules in ``k3s_images/`` (shipped as the package ``generators.k3s_images``), one per upstream
dependency graph, so each binary has exactly the dependency versions its project pins:

- ``kube/``: kube-apiserver from ``k8s.io/kubernetes`` (its staging modules replaced to the matching v0.x);
- ``etcd/``: etcd (``go.etcd.io/etcd/server/v3``), the version Kubernetes' ``build/dependencies.yaml`` pins;
- ``cilium/``: Cilium's generic operator and ``cmd/cilium-bgp-host`` (ours: Cilium's agent-side BGP,
  load-balancer and CiliumEnvoyConfig cells against a real apiserver), with Cilium's ``replace`` lines.

The versions are those of the modules' ``go.mod`` (one owner); the version strings the binaries report
come from the module proxy's record of the release (tag time, commit). A build is keyed by the module's
files, the package, tags, ldflags and the Go version; a key that exists is never built again. Builds run
one after another (each link needs about 2 GB) under a machine-wide lock, with progress and an estimate.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import importlib.resources
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import EnvironmentProblem, InputError
from .gomod import cache_dir, download, file_lock, go_env

Log = Callable[[str], None]

KUBERNETES_MODULE = "k8s.io/kubernetes"
ETCD_MODULE = "go.etcd.io/etcd/server/v3"
CILIUM_MODULE = "github.com/cilium/cilium"
GOBGP_UPSTREAM = "github.com/osrg/gobgp/v3"
BUILD_TIMEOUT_S = 3600
# Measured on this project's 2-core machines (BENCHMARKS.md): the estimate when no build was timed here yet.
DEFAULT_SECONDS = {"etcd": 40, "kube-apiserver": 180, "cilium-bgp-host": 170, "cilium-operator-generic": 60}


class GoBuildError(EnvironmentProblem):
    """A Go build failed; the message carries the compiler's last lines."""


def modules_root() -> Path:
    """The directory holding the Go modules (the checkout's k3s_images/, or the installed package's copy)."""
    return Path(str(importlib.resources.files("generators.k3s_images")))


_REQUIRE = re.compile(r"^\s*(?:require\s+)?([\w./-]+)\s+(v[\w.+-]+)(?:\s*//.*)?$")


def module_requirements(module_dir: str) -> dict[str, str]:
    """module path -> version, from the ``require`` lines of ``k3s_images/<module_dir>/go.mod``."""
    out: dict[str, str] = {}
    in_block = False
    for line in (modules_root() / module_dir / "go.mod").read_text().splitlines():
        text = line.split("//", 1)[0].strip() if not line.strip().startswith("//") else ""
        if text.startswith("require ("):
            in_block = True
            continue
        if in_block and text == ")":
            in_block = False
            continue
        if in_block or text.startswith("require "):
            m = _REQUIRE.match(text)
            if m:
                out[m.group(1)] = m.group(2)
    return out


def module_replacements(module_dir: str) -> dict[str, str]:
    """module path -> ``path version`` it is replaced with (``replace`` lines)."""
    out = {}
    for line in (modules_root() / module_dir / "go.mod").read_text().splitlines():
        m = re.match(r"^\s*replace\s+([\w./-]+)\s+=>\s+([\w./-]+)\s+(v[\w.+-]+)", line)
        if m:
            out[m.group(1)] = f"{m.group(2)} {m.group(3)}"
    return out


@dataclass(frozen=True)
class Pins:
    """What the committed modules build: Kubernetes, etcd and Cilium versions (without the leading v)."""

    kubernetes: str
    etcd: str
    cilium: str
    gobgp: str  # Cilium's GoBGP: "github.com/cilium/gobgp/v3 v3.0.0-..."

    @classmethod
    def read(cls) -> "Pins":
        kube, etcd, cilium = (module_requirements(d) for d in ("kube", "etcd", "cilium"))
        return cls(kubernetes=kube[KUBERNETES_MODULE].removeprefix("v"), etcd=etcd[ETCD_MODULE].removeprefix("v"),
                   cilium=cilium[CILIUM_MODULE].removeprefix("v"),
                   gobgp=module_replacements("cilium").get(GOBGP_UPSTREAM, GOBGP_UPSTREAM))


def check_versions(k3s_version: str, cilium_version: str, where: str) -> Pins:
    """The inventory's versions must be the ones the modules build; InputError (exit 2) otherwise."""
    pins = Pins.read()
    kube = re.sub(r"\+k3s\d+$", "", k3s_version).removeprefix("v")
    problems = []
    if kube != pins.kubernetes:
        problems.append(f"versions.k3s {k3s_version} embeds Kubernetes {kube}, but the lab builds kube-apiserver "
                        f"{pins.kubernetes} (k3s_images/kube/go.mod)")
    if cilium_version != pins.cilium:
        problems.append(f"versions.cilium {cilium_version}, but the lab builds Cilium {pins.cilium} "
                        "(k3s_images/cilium/go.mod)")
    if problems:
        raise InputError(f"{where}: " + "; ".join(problems) + ". Set the inventory's versions to those, or move the "
                         "Go modules in k3s_images/ to the versions you run (go get, go mod tidy) and build again")
    return pins


# ----------------------------------------------------------------------------- the binaries
def _release(module: str, version: str) -> tuple[str, str]:
    """(commit or "", tag time as RFC 3339) of a module release, from the module proxy's record."""
    info = download(module, version, why="version strings of the lab's binaries")
    record = json.loads(Path(info["Info"]).read_text()) if info.get("Info") else {}
    when = dt.datetime.fromisoformat(str(record.get("Time", "1970-01-01T00:00:00Z")).replace("Z", "+00:00"))
    return str((record.get("Origin") or {}).get("Hash", "")), when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _kube_ldflags(pins: Pins) -> str:
    _, when = _release(KUBERNETES_MODULE, "v" + pins.kubernetes)
    major, minor = pins.kubernetes.split(".")[:2]
    values = {"gitVersion": "v" + pins.kubernetes, "gitMajor": major, "gitMinor": minor, "gitCommit": "",
              "gitTreeState": "archive", "buildDate": when}  # the variables hack/lib/version.sh sets
    flags = [f"-X {pkg}.{k}={v}" for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
             for k, v in values.items()]
    return "all=" + " ".join(flags) + " -s -w"


def _cilium_ldflags(pins: Pins) -> str:
    commit, when = _release(CILIUM_MODULE, "v" + pins.cilium)
    stamp = dt.datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).isoformat()
    return f"-s -w -X 'github.com/cilium/cilium/pkg/version.ciliumVersion={pins.cilium} {commit[:10]} {stamp}'"


@dataclass(frozen=True)
class GoBinary:
    name: str
    module_dir: str  # under k3s_images/
    package: str
    tags: tuple[str, ...]
    ldflags: Callable[[Pins], str]

    def argv(self, pins: Pins, output: Path) -> list[str]:
        return ["build", "-mod=readonly", "-buildvcs=false", "-trimpath",
                *([f"-tags={','.join(self.tags)}"] if self.tags else []), f"-ldflags={self.ldflags(pins)}",
                "-o", str(output), self.package]


BINARIES: dict[str, GoBinary] = {b.name: b for b in (
    GoBinary("etcd", "etcd", ETCD_MODULE, (), lambda _: "-s -w"),
    GoBinary("kube-apiserver", "kube", "k8s.io/kubernetes/cmd/kube-apiserver", ("selinux", "notest", "grpcnotrace"),
             _kube_ldflags),
    GoBinary("cilium-bgp-host", "cilium", "./cmd/cilium-bgp-host", ("osusergo",), _cilium_ldflags),
    GoBinary("cilium-operator-generic", "cilium", "github.com/cilium/cilium/operator",
             ("osusergo", "ipam_provider_operator"), _cilium_ldflags),
)}


def _go_version() -> str:
    go = shutil.which("go")
    if go is None:
        raise GoBuildError("the Go toolchain (`go`) is not on PATH; install Go 1.25 or later to build the Cilium "
                           "lab's binaries (the twin fidelity needs no Go build)")
    return subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False).stdout.strip()


def source_digest(module_dir: str) -> str:
    """sha256 over a module's go.mod, go.sum and every .go file of ours in it."""
    root = modules_root() / module_dir
    h = hashlib.sha256()
    for path in sorted([root / "go.mod", root / "go.sum", *root.rglob("*.go")]):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def build_key(binary: GoBinary, pins: Pins, go_version: str) -> str:
    """The cache key of a binary (computable without building: the lab's image tags use it)."""
    blob = json.dumps({"name": binary.name, "package": binary.package, "tags": binary.tags,
                       "module": source_digest(binary.module_dir), "go": go_version,
                       "pins": [pins.kubernetes, pins.etcd, pins.cilium]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def binary_path(name: str, key: str) -> Path:
    return cache_dir() / "go" / f"{name}-{key}" / name


def _durations_file() -> Path:
    return cache_dir() / "go" / "durations.json"


def _estimate(name: str) -> float:
    try:
        return float(json.loads(_durations_file().read_text())[name])
    except (OSError, ValueError, KeyError):
        return float(DEFAULT_SECONDS.get(name, 120))


def _remember(name: str, seconds: float) -> None:
    path = _durations_file()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    known[name] = round(seconds, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(known, indent=1, sort_keys=True))


def _build(binary: GoBinary, pins: Pins, out: Path, log: Log) -> None:
    estimate = _estimate(binary.name)
    log(f"go build {binary.name} (Go module k3s_images/{binary.module_dir}; about {estimate / 60:.0f} min here)")
    t0 = time.monotonic()
    done = threading.Event()

    def progress() -> None:
        while not done.wait(30):
            spent = time.monotonic() - t0
            log(f"  {binary.name}: {spent:.0f} s of about {estimate:.0f} s")

    ticker = threading.Thread(target=progress, daemon=True)
    ticker.start()
    out.parent.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{binary.name}-", dir=out.parent.parent) as tmp:
        target = Path(tmp) / binary.name
        try:
            proc = subprocess.run(["go", *binary.argv(pins, target)], cwd=modules_root() / binary.module_dir,
                                  env=go_env(GOFLAGS="-mod=readonly"), capture_output=True, text=True,
                                  timeout=BUILD_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
        finally:
            done.set()
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-20:]
            raise GoBuildError(f"go build {binary.name} failed (exit {proc.returncode}); see the lines below", tail)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(target, out)  # complete binaries only
    spent = time.monotonic() - t0
    _remember(binary.name, spent)
    log(f"  {binary.name}: built in {spent:.0f} s -> {out}")


def ensure_binaries(names: list[str], log: Log = print, pins: Pins | None = None) -> dict[str, Path]:
    """Every named binary, built when missing (one at a time, machine-wide); name -> path."""
    pins = pins or Pins.read()
    go_version = _go_version()
    out: dict[str, Path] = {}
    with file_lock(cache_dir() / "locks" / "go-build.lock"):
        for name in names:
            binary = BINARIES[name]
            path = binary_path(name, build_key(binary, pins, go_version))
            if not path.is_file():
                _build(binary, pins, path, log)
            out[name] = path
    return out


def binary_identities(names: list[str], pins: Pins | None = None) -> dict[str, tuple[Path, str]]:
    """name -> (where the binary is or will be, what it is), without building: for image specs and tags."""
    pins = pins or Pins.read()
    go_version = _go_version()
    out = {}
    for name in names:
        key = build_key(BINARIES[name], pins, go_version)
        out[name] = (binary_path(name, key), f"{name} {key}")
    return out
