"""Prerequisite planning with a fake machine (no Docker, no apt, no Go)."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from generators.lab import prereqs
from generators.lab.prereqs import (
    CLAB_PATCH_MARK,
    CONTAINERLAB_VERSION,
    GOBGP_VERSION,
    PrereqError,
    Step,
    describe,
    plan_prereqs,
    wait_until,
)

ALL_COMMANDS = {"dockerd", "docker", "ip", "bridge", "iptables", "vtysh", "haproxy", "debootstrap"}


@dataclass
class FakeProbe:
    apt: bool = True
    commands: set[str] = field(default_factory=lambda: set(ALL_COMMANDS))
    docker: bool = True
    clab: str | None = CONTAINERLAB_VERSION
    gobgp: dict[str, str | None] = field(
        default_factory=lambda: {"gobgpd": GOBGP_VERSION, "gobgp": GOBGP_VERSION})
    go: tuple[int, int] | None = (1, 26)
    proc_modules: bool = True

    def has_apt(self) -> bool:
        return self.apt

    def has_command(self, name: str) -> bool:
        return name in self.commands

    def docker_running(self) -> bool:
        return self.docker

    def containerlab_version(self) -> str | None:
        return self.clab

    def kernel_lists_modules(self) -> bool:
        return self.proc_modules

    def gobgp_version(self, command: str) -> str | None:
        return self.gobgp.get(command)

    def go_version(self) -> tuple[int, int] | None:
        return self.go


EVERYTHING = {"docker", "containerlab", "gobgp", "frr-check", "images"}


def kinds(plan: prereqs.Plan) -> list[str]:
    return [s.kind for s in plan.steps]


def test_all_present_plans_nothing() -> None:
    plan = plan_prereqs(EVERYTHING, FakeProbe())
    assert plan.empty
    assert "containerlab 0.79.0" in plan.present and "gobgp 3.37.0" in plan.present


def test_missing_packages_become_one_apt_step_with_only_those_packages() -> None:
    probe = FakeProbe(commands=ALL_COMMANDS - {"vtysh", "debootstrap"})
    plan = plan_prereqs(EVERYTHING, probe)
    assert plan.steps == (Step("apt-install", ("debootstrap", "frr"),
                               "commands not found: debootstrap, vtysh"),)


def test_need_selects_parts() -> None:
    probe = FakeProbe(commands=set(), docker=False, clab=None, gobgp={})
    assert kinds(plan_prereqs({"frr-check"}, probe)) == ["apt-install"]
    assert plan_prereqs({"frr-check"}, probe).steps[0].items == ("frr", "haproxy")
    assert kinds(plan_prereqs({"gobgp"}, probe)) == ["build-gobgp"]
    assert kinds(plan_prereqs({"containerlab"}, probe)) == ["apt-install", "build-containerlab"]
    assert kinds(plan_prereqs({"docker"}, probe)) == ["apt-install", "start-dockerd"]
    assert plan_prereqs({"docker"}, probe).steps[0].items == ("docker.io", "iproute2", "iptables")


def test_images_part_implies_gobgp_and_debootstrap() -> None:
    probe = FakeProbe(commands=ALL_COMMANDS - {"debootstrap"}, gobgp={"gobgpd": GOBGP_VERSION})
    plan = plan_prereqs({"images"}, probe)
    assert kinds(plan) == ["apt-install", "build-gobgp"]
    assert plan.steps[1].why == "gobgp: missing"


def test_wrong_versions_are_rebuilt() -> None:
    probe = FakeProbe(clab="0.78.1", gobgp={"gobgpd": "3.10.0", "gobgp": GOBGP_VERSION})
    plan = plan_prereqs(EVERYTHING, probe)
    assert kinds(plan) == ["build-containerlab", "build-gobgp"]
    assert "0.78.1" in plan.steps[0].why and "gobgpd: 3.10.0" in plan.steps[1].why


def test_stopped_docker_is_started_not_reinstalled() -> None:
    plan = plan_prereqs({"docker"}, FakeProbe(docker=False))
    assert plan.steps == (Step("start-dockerd", (), "`docker info` fails"),)
    assert "dockerd.log" in describe(plan)[0]


def test_no_apt_names_what_to_install_by_hand() -> None:
    probe = FakeProbe(apt=False, commands=ALL_COMMANDS - {"vtysh"}, docker=False)
    with pytest.raises(PrereqError) as err:
        plan_prereqs(EVERYTHING, probe)
    text = str(err.value)
    assert "no apt-get" in text and "frr" in text and "vtysh" in text and "dockerd" in text


def test_no_apt_is_fine_when_everything_is_there() -> None:
    assert plan_prereqs(EVERYTHING, FakeProbe(apt=False)).empty


def test_old_go_is_a_clear_error() -> None:
    with pytest.raises(PrereqError, match=r"Go >= 1\.26.*go1\.19"):
        plan_prereqs({"containerlab"}, FakeProbe(clab=None, go=(1, 19)))
    with pytest.raises(PrereqError, match="`go` is not on PATH"):
        plan_prereqs({"gobgp"}, FakeProbe(gobgp={}, go=None))
    # an old Go does not matter when nothing needs building
    assert plan_prereqs({"containerlab", "gobgp"}, FakeProbe(go=None)).empty


def test_unknown_part_is_rejected() -> None:
    with pytest.raises(PrereqError, match="unknown prerequisite part"):
        plan_prereqs({"dokcer"}, FakeProbe())


def test_ensure_prereqs_with_everything_present_prints_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path))
    lines: list[str] = []
    prereqs.ensure_prereqs(EVERYTHING, log=lines.append, probe=FakeProbe())
    assert len(lines) == 1 and lines[0].startswith("prereqs: ok")


def test_wait_until_polls_a_condition_with_a_deadline() -> None:
    calls = iter([False, False, True])
    assert wait_until(lambda: next(calls), timeout_s=5, interval_s=0.01)
    assert not wait_until(lambda: False, timeout_s=0.05, interval_s=0.01)
    with pytest.raises(PrereqError, match="gone"):
        wait_until(lambda: False, timeout_s=5, interval_s=0.01, abort=lambda: "gone")


FIXED = f"{CONTAINERLAB_VERSION}+{CLAB_PATCH_MARK}"


def test_kernel_without_proc_modules_needs_the_fixed_containerlab() -> None:
    plan = plan_prereqs({"containerlab"}, FakeProbe(proc_modules=False))
    assert [(s.kind, s.items) for s in plan.steps] == [("build-containerlab", (FIXED,))]
    assert "/proc/modules" in plan.steps[0].why
    assert plan_prereqs({"containerlab"}, FakeProbe(proc_modules=False, clab=FIXED)).empty


def test_kernel_with_proc_modules_takes_either_build_and_builds_the_release() -> None:
    assert plan_prereqs({"containerlab"}, FakeProbe(clab=FIXED)).empty
    plan = plan_prereqs({"containerlab"}, FakeProbe(clab=None))
    assert plan.steps[0].items == (CONTAINERLAB_VERSION,)


def test_proc_modules_fix_applies_once_or_fails_clearly(tmp_path) -> None:
    utils = tmp_path / "utils"
    utils.mkdir()
    target = utils / "kernel_module.go"
    target.write_text("package utils\n\nfunc f() {\n" + prereqs.CLAB_PATCH_OLD + "}\n")
    prereqs._fix_proc_modules(tmp_path)
    fixed = target.read_text()
    assert "os.IsNotExist(err)" in fixed and fixed.count('os.Open("/proc/modules")') == 1
    with pytest.raises(PrereqError, match="expected code"):
        prereqs._fix_proc_modules(tmp_path)  # already fixed: the old code is gone
