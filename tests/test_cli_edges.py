"""Hostile input through the real command line, without Docker: one clear message, the documented exit code,
no traceback, and nothing created or deleted.

Every lab command validates a ``--name`` before it touches anything; ``gen --out`` replaces only what
``gen`` wrote; an inventory that is empty, a directory or a rack inventory is named as such.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TOPOLOGY

LAB_COMMANDS = ("lab-up", "lab-down", "status", "verify", "drill")
BAD_NAMES = ["..", "../x", "a/b", "/tmp/victim", "has space", "Upper", "", "-lead", "x" * 64]


def cli(*argv: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "generators", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def tree(path: Path) -> dict[str, tuple[int, bytes | None]]:
    return {
        p.relative_to(path).as_posix(): (p.stat().st_mode, p.read_bytes() if p.is_file() else None)
        for p in sorted(path.rglob("*"))
    }


def no_traceback(res: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in res.stderr + res.stdout, res.stderr


@pytest.mark.parametrize("command", LAB_COMMANDS)
@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_lab_names_are_refused_before_anything_happens(tmp_path, command, name):
    victim = tmp_path / "victim"  # what a name like ../victim or an absolute path could reach
    (victim / "keep").mkdir(parents=True)
    (victim / "keep" / "file").write_text("mine")
    work = tmp_path / "work"
    work.mkdir()
    before = tree(tmp_path)
    # DOCKER_HOST points nowhere: a command that reached Docker would fail with exit 3, not 2
    res = cli(
        command,
        "--inventory",
        str(TOPOLOGY / "lab.yml"),
        "--name=" + name.replace("/tmp/victim", str(victim)),
        *(["--scenario", "all"] if command == "drill" else []),
        cwd=work,
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock", "K3S_BGP_LAB_STATE": str(tmp_path / "state")},
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert "is not a valid lab name" in res.stderr and "lowercase DNS label" in res.stderr
    no_traceback(res)
    assert tree(tmp_path) == before  # nothing created (no build/, no state record), nothing deleted


@pytest.mark.parametrize("command", ["lab-up", "status", "verify", "drill"])
def test_a_rack_inventory_given_to_a_lab_command_is_named(tmp_path, command):
    res = cli(
        command,
        "--inventory",
        str(TOPOLOGY / "rack.yml"),
        *(["--scenario", "all"] if command == "drill" else []),
        cwd=tmp_path,
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert "not a lab inventory (no `lab:` section)" in res.stderr
    no_traceback(res)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "content,why",
    [("", "the file is empty"), ("# only a comment\n", "the file is empty"), ("- a\n- b\n", "not a mapping")],
)
def test_empty_or_shapeless_inventories_say_so_once(tmp_path, content, why):
    inv = tmp_path / "inv.yml"
    inv.write_text(content)
    res = cli("gen", "--inventory", str(inv), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert res.returncode == 2 and why in res.stderr and "(1 problem)" in res.stderr, res.stderr
    no_traceback(res)
    assert not (tmp_path / "out").exists()


def test_an_inventory_path_that_is_a_directory_is_named(tmp_path):
    res = cli("gen", "--inventory", str(TOPOLOGY), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert res.returncode == 2 and "is a directory, not an inventory file" in res.stderr, res.stderr
    no_traceback(res)


def test_gen_never_replaces_a_directory_with_a_foreign_manifest(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "MANIFEST.json").write_text(json.dumps({"files": {"notes.txt": {}}}))
    (user / "notes.txt").write_text("my notes")
    user.chmod(0o750)
    before = tree(tmp_path)
    res = cli("gen", "--inventory", str(TOPOLOGY / "rack.yml"), "--out", str(user), cwd=tmp_path)
    assert res.returncode == 2 and "refusing to replace it" in res.stderr and "not written by `gen`" in res.stderr
    no_traceback(res)
    assert tree(tmp_path) == before


def test_gen_never_replaces_its_own_output_once_a_user_file_was_added(tmp_path):
    out = tmp_path / "out"
    assert cli("gen", "--inventory", str(TOPOLOGY / "rack.yml"), "--out", str(out), cwd=tmp_path).returncode == 0
    (out / "notes.txt").write_text("added by hand")
    before = tree(tmp_path)
    res = cli("gen", "--inventory", str(TOPOLOGY / "rack.yml"), "--out", str(out), cwd=tmp_path)
    assert res.returncode == 2 and "holds files `gen` did not write (notes.txt)" in res.stderr
    assert tree(tmp_path) == before


def test_gen_keeps_the_mode_of_the_directory_it_replaces(tmp_path):
    out = tmp_path / "out"
    assert cli("gen", "--inventory", str(TOPOLOGY / "rack.yml"), "--out", str(out), cwd=tmp_path).returncode == 0
    out.chmod(0o750)
    assert cli("gen", "--inventory", str(TOPOLOGY / "lab.yml"), "--out", str(out), cwd=tmp_path).returncode == 0
    assert out.stat().st_mode & 0o777 == 0o750 and (out / "lab.clab.yml").is_file()


@pytest.mark.parametrize("where", ["under-a-file", "read-only-filesystem"])
def test_gen_into_a_place_it_cannot_write_is_an_input_error(tmp_path, where):
    if where == "under-a-file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    else:
        out = Path("/proc/k3s-bgp-lab-out")  # procfs refuses new directories, for root too
    res = cli("gen", "--inventory", str(TOPOLOGY / "rack.yml"), "--out", str(out), cwd=tmp_path)
    assert res.returncode == 2 and "choose an --out" in res.stderr, res.stderr
    no_traceback(res)
    assert [p.name for p in tmp_path.iterdir()] == (["file"] if where == "under-a-file" else [])


def test_invoke_turns_a_bad_number_into_the_drills_usage_error(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "drill", "--repeat", "abc"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "argument --repeat: invalid int value: 'abc'" in res.stderr, res.stderr
    no_traceback(res)


def test_no_docker_is_an_environment_problem(tmp_path):
    res = cli(
        "status",
        "--inventory",
        str(TOPOLOGY / "lab.yml"),
        cwd=tmp_path,
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )
    assert res.returncode == 3 and "environment problem: cannot reach the Docker engine" in res.stderr, res.stderr
    no_traceback(res)


def test_a_bad_inventory_lists_its_problems_with_exit_2(tmp_path):
    inv = tmp_path / "bad.yml"
    inv.write_text(f"include: {TOPOLOGY / 'lab.yml'}\nbgp:\n  timers: {{hold: 15, keepalive: 6}}\n")
    res = cli("lab-up", "--inventory", str(inv), cwd=tmp_path, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert res.returncode == 2 and "bgp.timers.keepalive = 6" in res.stderr and "fix: use keepalive <= 5" in res.stderr
    no_traceback(res)
    assert [p.name for p in tmp_path.iterdir()] == ["bad.yml"]
