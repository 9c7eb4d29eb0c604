"""A thin wrapper around the Docker Python SDK for the lab runtime, checks and drills.

API version negotiation is "auto" (the daemon here is Debian's docker.io 20.10). Everything the lab
does to containers goes through ``Engine`` so that it can be replaced in tests by a fake with the
same methods.
"""
from __future__ import annotations

import io
import os
import signal
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import docker
import docker.errors

from generators.errors import EnvironmentProblem
from generators.rack.shell import Result


class EngineError(EnvironmentProblem):
    """Docker refused or failed an operation; the message names it."""


class ExecTimeout(EngineError):
    """A command run in a container did not finish in time (it was killed)."""


class ExecStreamError(EngineError):
    """The command ran, but docker-py lost its output (a misread frame: "N is not a valid stream"). Seen here
    once in thousands of execs, on a large output; a read-only command can simply be run again."""


ExecResult = Result  # a command's exit code and output: one type for docker exec and for SSH


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    state: str  # running, exited, created, ...
    image: str
    labels: dict[str, str] = field(default_factory=dict)


def _label_filter(labels: Mapping[str, str | None]) -> list[str]:
    return [k if v is None else f"{k}={v}" for k, v in sorted(labels.items())]


class Engine:
    """Docker engine access. Create with ``Engine()`` (uses DOCKER_HOST or the local socket)."""

    def __init__(self, client: docker.DockerClient | None = None, timeout_s: int = 600) -> None:
        try:
            self.client = client or docker.from_env(version="auto", timeout=timeout_s)
        except docker.errors.DockerException as exc:
            raise EngineError(f"cannot reach the Docker engine ({exc}); is dockerd running? "
                              "`ensure_prereqs({'docker'})` starts it") from exc
        self.api = self.client.api

    # ------------------------------------------------------------ commands in containers

    def exec(self, container: str, argv: list[str], timeout: float = 30.0,
             env: Mapping[str, str] | None = None, workdir: str | None = None,
             user: str = "") -> ExecResult:
        """Run ``argv`` in a running container; kill it and raise ExecTimeout after ``timeout`` s."""
        try:
            exec_id = self.api.exec_create(container, list(argv), stdout=True, stderr=True,
                                           environment=dict(env) if env else None,
                                           workdir=workdir, user=user)["Id"]
        except docker.errors.APIError as exc:
            raise EngineError(f"exec {argv!r} in {container}: {exc.explanation or exc}") from exc
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["out"] = self.api.exec_start(exec_id, demux=True)
            except Exception as exc:  # noqa: BLE001 - handed to the caller below
                box["error"] = exc

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            self._kill_exec(exec_id)
            worker.join(5)
            raise ExecTimeout(f"{argv!r} in {container} did not finish within {timeout:g} s (killed)")
        if "error" in box:
            kind = ExecStreamError if isinstance(box["error"], ValueError) and "valid stream" in str(box["error"]) \
                else EngineError
            raise kind(f"exec {argv!r} in {container}: {box['error']}")
        out, err = box["out"] if box.get("out") else (b"", b"")
        return ExecResult(self._exit_code(exec_id), (out or b"").decode(errors="replace"),
                          (err or b"").decode(errors="replace"))

    def _exit_code(self, exec_id: str) -> int:
        deadline = time.monotonic() + 5
        while True:
            info = self.api.exec_inspect(exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            if time.monotonic() > deadline:
                raise EngineError(f"exec {exec_id[:12]} finished its output but reports no exit code")
            time.sleep(0.05)

    def _kill_exec(self, exec_id: str) -> None:
        pid = int(self.api.exec_inspect(exec_id).get("Pid") or 0)
        if pid > 0:
            try:
                os.kill(pid, signal.SIGKILL)  # the exec's host PID (we run as root next to dockerd)
            except ProcessLookupError:
                pass

    # ------------------------------------------------------------ files

    def put_files(self, container: str, files: Mapping[str, bytes], mode: int = 0o644,
                  dir_modes: Mapping[str, int] | None = None) -> None:
        """Write files (absolute path -> content) into a container, creating parent folders.

        ``dir_modes``: directories (absolute) created or re-moded first, e.g. ``{"/etc/twin/pki": 0o700}``.
        """
        buf = io.BytesIO()
        now = time.time()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path, dmode in sorted((dir_modes or {}).items()):
                info = tarfile.TarInfo(path.strip("/"))
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, dmode, now
                tar.addfile(info)
            for path, data in sorted(files.items()):
                if not path.startswith("/"):
                    raise EngineError(f"put_files needs absolute paths, got {path!r}")
                info = tarfile.TarInfo(path.lstrip("/"))
                info.size, info.mode, info.mtime = len(data), mode, now
                tar.addfile(info, io.BytesIO(data))
        try:
            ok = self.api.put_archive(container, "/", buf.getvalue())
        except docker.errors.APIError as exc:
            raise EngineError(f"copy {sorted(files)} into {container}: {exc.explanation or exc}") from exc
        if not ok:
            raise EngineError(f"copy {sorted(files)} into {container} was refused")

    # ------------------------------------------------------------ images

    def image_exists(self, tag: str) -> bool:
        try:
            self.client.images.get(tag)
            return True
        except docker.errors.ImageNotFound:
            return False

    def image_size(self, tag: str) -> int:
        return int(self.api.inspect_image(tag)["Size"])

    def import_rootfs(self, tar_path: Path, tag: str, changes: list[str] | tuple[str, ...] = ()) -> str:
        """``docker import`` a root filesystem tarball as ``tag`` (repo:tag); returns the image id.

        The tag only appears when the import has completed, so a failed import leaves no tag.
        """
        repo, _, version = tag.rpartition(":")
        if not repo or "/" in version:
            raise EngineError(f"image tag {tag!r} must be repository:tag")
        try:
            self.api.import_image_from_file(str(tar_path), repository=repo, tag=version,
                                            changes=list(changes) or None)
            return str(self.api.inspect_image(tag)["Id"])
        except docker.errors.APIError as exc:
            raise EngineError(f"docker import {tar_path} as {tag}: {exc.explanation or exc}") from exc
        except docker.errors.ImageNotFound as exc:
            raise EngineError(f"docker import {tar_path} gave no image {tag}") from exc

    # ------------------------------------------------------------ containers

    def containers(self, labels: Mapping[str, str | None] | None = None,
                   all: bool = True) -> list[ContainerInfo]:  # noqa: A002 - docker's own word
        """Containers whose labels match (value None: label present with any value)."""
        filters = {"label": _label_filter(labels)} if labels else None
        found = self.client.containers.list(all=all, filters=filters)
        return [ContainerInfo(c.id, c.name, c.status, (c.attrs.get("Config") or {}).get("Image", ""),
                              dict(c.labels or {})) for c in found]

    def inspect(self, container: str) -> dict[str, Any]:
        try:
            return dict(self.api.inspect_container(container))
        except docker.errors.NotFound as exc:
            raise EngineError(f"no container {container!r}") from exc

    def run_idle(self, image: str, name: str, labels: Mapping[str, str] | None = None,
                 privileged: bool = False, command: list[str] | None = None,
                 volumes: Mapping[str, Mapping[str, str]] | None = None,
                 network: str | None = None, cap_add: list[str] | tuple[str, ...] = (),
                 sysctls: Mapping[str, str] | None = None) -> str:
        """Start a detached container that idles (``sleep infinity`` unless ``command``); returns id.

        Note: ``privileged=True`` fails on hosts whose capability bounding set lacks a capability
        (seen here: no CAP_SYS_RESOURCE); use ``cap_add`` (e.g. NET_ADMIN, NET_RAW, SYS_ADMIN).
        """
        try:
            c = self.client.containers.run(
                image, command or ["sleep", "infinity"], name=name, detach=True,
                labels=dict(labels or {}), privileged=privileged, volumes=dict(volumes or {}),
                network=network, init=True, cap_add=list(cap_add) or None,
                sysctls=dict(sysctls) if sysctls else None)
        except docker.errors.APIError as exc:
            raise EngineError(f"start container {name} from {image}: {exc.explanation or exc}") from exc
        return str(c.id)

    def remove(self, container: str) -> bool:
        """Force-remove a container; False when it did not exist."""
        try:
            self.api.remove_container(container, force=True, v=True)
            return True
        except docker.errors.NotFound:
            return False
