"""The project's machine-local cache and the one way it fetches Go modules (``go mod download``).

Go modules come through whatever proxy ``go env GOPROXY`` names, into Go's own module cache
(``go env GOMODCACHE``); what the project derives from them (schemas, binaries, images) goes under
:func:`cache_dir`. Used by the schema fetcher, the containerlab/GoBGP builds and the Cilium builds.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from generators.errors import EnvironmentProblem

GO_DOWNLOAD_TIMEOUT_S = 900


class GoModuleError(EnvironmentProblem):
    """A Go module could not be downloaded; the message says which and what to check."""


def cache_dir() -> Path:
    """Root of the project's machine-local cache (``$K3S_BGP_LAB_CACHE`` or ~/.cache/k3s-bgp-lab)."""
    env = os.environ.get("K3S_BGP_LAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "k3s-bgp-lab"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` between processes of this project on one machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def go_env(**extra: str) -> dict[str, str]:
    """The environment every Go command of the project runs with: this machine's Go, no cgo."""
    return {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOWORK": "off", "GO111MODULE": "on", **extra}


def download(module: str, version: str, why: str = "") -> dict:
    """``go mod download -json module@version``: the module's ``Dir`` (source) and ``Zip`` in Go's cache."""
    go = shutil.which("go")
    target = f"{module}@{version if version.startswith('v') else 'v' + version}"
    if go is None:
        raise GoModuleError(f"{target}{' (' + why + ')' if why else ''}: the Go toolchain (`go`) is not on PATH; "
                            "install Go (a release with module support) so the module can be downloaded")
    try:
        proc = subprocess.run([go, "mod", "download", "-json", target], env=go_env(), capture_output=True, text=True,
                              timeout=GO_DOWNLOAD_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False,
                              cwd=str(Path.home()))
    except subprocess.TimeoutExpired:
        raise GoModuleError(f"{target}: `go mod download` did not finish in {GO_DOWNLOAD_TIMEOUT_S} s; check the "
                            "network and `go env GOPROXY`") from None
    info: dict = {}
    try:
        info = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        pass
    if proc.returncode != 0 or info.get("Error") or not info.get("Dir"):
        reason = info.get("Error") or proc.stderr.strip() or f"exit code {proc.returncode}"
        raise GoModuleError(f"{target}: `go mod download` failed: {reason}. Check the network, `go env GOPROXY` "
                            "and `go env GOSUMDB`")
    return info
