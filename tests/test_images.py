"""Image specs, content tags and the FRR version mapping (no Docker, no debootstrap)."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import tarfile
from pathlib import Path

import pytest

from generators.lab import images
from generators.lab.images import (
    ExtraFile,
    ImageError,
    ImageSpec,
    content_hash,
    ensure_image,
    image_tag,
    rootfs_key,
)
from generators.lab.kinds import specs_for
from generators.lab.kinds.gateway import frr_suite_for


@pytest.fixture()
def binary(tmp_path: Path) -> Path:
    p = tmp_path / "gobgpd"
    p.write_bytes(b"\x7fELF first build")
    return p


def spec(binary: Path, **over) -> ImageSpec:
    base = ImageSpec(name="twin", suite="bookworm", packages=("haproxy", "python3"),
                     extra_files=(ExtraFile("/usr/local/bin/gobgpd", binary),),
                     changes=('CMD ["sleep", "infinity"]',))
    return dataclasses.replace(base, **over)


def test_tag_is_stable_and_names_the_image(binary: Path) -> None:
    tag = image_tag(spec(binary))
    assert tag == image_tag(spec(binary))
    repo, _, digest = tag.rpartition(":")
    assert repo == "k3s-bgp-lab/twin" and len(digest) == 12 and int(digest, 16) >= 0


def test_package_order_and_duplicates_do_not_change_the_tag(binary: Path) -> None:
    assert content_hash(spec(binary)) == content_hash(
        spec(binary, packages=("python3", "haproxy", "python3")))


def test_note_does_not_change_the_tag(binary: Path) -> None:
    assert content_hash(spec(binary)) == content_hash(spec(binary, note="why"))


@pytest.mark.parametrize("change", [
    {"suite": "bullseye"},
    {"packages": ("haproxy", "python3", "curl")},
    {"changes": ('CMD ["bash"]',)},
    {"extra_files": ()},
])
def test_each_input_changes_the_tag(binary: Path, change: dict) -> None:
    assert content_hash(spec(binary)) != content_hash(spec(binary, **change))


def test_extra_file_content_mode_and_destination_change_the_tag(binary: Path) -> None:
    before = content_hash(spec(binary))
    moved = spec(binary, extra_files=(ExtraFile("/usr/bin/gobgpd", binary),))
    chmod = spec(binary, extra_files=(ExtraFile("/usr/local/bin/gobgpd", binary, 0o700),))
    assert before != content_hash(moved) and before != content_hash(chmod)
    binary.write_bytes(b"\x7fELF second build")
    assert content_hash(spec(binary)) != before


def test_recipe_version_changes_tag_and_rootfs_key(binary: Path, monkeypatch) -> None:
    tag, key = content_hash(spec(binary)), rootfs_key(spec(binary))
    monkeypatch.setattr(images, "RECIPE_VERSION", "999")
    assert content_hash(spec(binary)) != tag and rootfs_key(spec(binary)) != key


def test_rootfs_key_ignores_extra_files_and_changes(binary: Path) -> None:
    key = rootfs_key(spec(binary))
    assert rootfs_key(spec(binary, extra_files=(), changes=())) == key
    assert rootfs_key(spec(binary, suite="bullseye")) != key
    assert rootfs_key(spec(binary, packages=("haproxy",))) != key


def test_missing_extra_file_says_how_to_get_it(tmp_path: Path) -> None:
    s = ImageSpec(name="twin", suite="bookworm", packages=(),
                  extra_files=(ExtraFile("/usr/local/bin/gobgpd", tmp_path / "absent"),))
    with pytest.raises(ImageError, match="ensure_prereqs"):
        image_tag(s)


@pytest.mark.parametrize("bad", [{"name": "Twin!"}, {"suite": "bookworm/updates"}])
def test_spec_validation(binary: Path, bad: dict) -> None:
    with pytest.raises(ImageError):
        spec(binary, **bad)


def test_relative_extra_destination_is_rejected(binary: Path) -> None:
    with pytest.raises(ImageError, match="absolute"):
        spec(binary, extra_files=(ExtraFile("usr/local/bin/gobgpd", binary),))


@pytest.mark.parametrize("version,suite,debian", [
    ("8.4.4", "bookworm", "8.4.4"),
    ("8.3", "bookworm", "8.4.4"),
    ("v9.1.2", "bookworm", "8.4.4"),
    ("10", "bookworm", "8.4.4"),
    ("8.2.9", "bullseye", "7.5.1"),
    ("8.1", "bullseye", "7.5.1"),
    ("7.5.1", "bullseye", "7.5.1"),
])
def test_frr_version_mapping(version: str, suite: str, debian: str) -> None:
    got_suite, got_debian, reason = frr_suite_for(version)
    assert (got_suite, got_debian) == (suite, debian)
    assert "N-bit" in reason


def test_frr_mapping_reasons_say_whether_the_release_matches() -> None:
    assert "may differ" not in frr_suite_for("8.4.4")[2]
    assert "may differ" in frr_suite_for("9.1")[2]
    assert "lacks it" in frr_suite_for("8.1")[2]


@pytest.mark.parametrize("bad", ["banana", "", "8.x", "8.1.2.3", "1.0", "-8.4"])
def test_bad_frr_versions_are_clear_errors(bad: str) -> None:
    with pytest.raises(ImageError, match="FRR version"):
        frr_suite_for(bad)


def test_specs_for_lab(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path))
    by_name = {s.name: s for s in specs_for("8.1")}
    assert set(by_name) == {"gateway", "twin", "client"}
    assert by_name["gateway"].suite == "bullseye" and "frr" in by_name["gateway"].packages
    assert 'LABEL k3s-bgp-lab.frr-version="7.5.1"' in by_name["gateway"].changes
    twin = by_name["twin"]
    assert {f.dest for f in twin.extra_files} == {"/usr/local/bin/gobgpd", "/usr/local/bin/gobgp"}
    assert all(f.source.parent == tmp_path / "bin" for f in twin.extra_files)
    assert {"haproxy", "python3", "iptables"} <= set(twin.packages)
    assert {"curl", "ca-certificates"} <= set(by_name["client"].packages)
    assert specs_for("8.4.4")[0].suite == "bookworm"


class RecordingEngine:
    def __init__(self, present: set[str]) -> None:
        self.present = present
        self.imported: list[tuple[str, tuple[str, ...]]] = []

    def image_exists(self, tag: str) -> bool:
        return tag in self.present

    def import_rootfs(self, tar_path: Path, tag: str, changes=()) -> str:
        self.imported.append((tag, tuple(changes)))
        return "sha256:x"


def test_present_image_is_not_rebuilt(binary: Path, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path / "cache"))
    s = spec(binary)
    engine = RecordingEngine({image_tag(s)})
    lines: list[str] = []
    assert ensure_image(s, engine, lines.append) == image_tag(s)
    assert engine.imported == [] and lines == [f"image twin: present ({image_tag(s)})"]
    assert not (tmp_path / "cache").exists()  # no debootstrap, no cache work


def test_missing_image_is_imported_from_the_cached_rootfs_with_extras(
        binary: Path, monkeypatch, tmp_path: Path) -> None:
    """A cached rootfs tarball is reused: only the extra files are added and imported."""
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path / "cache"))
    s = spec(binary)
    base = images.rootfs_cache_path(s)
    base.parent.mkdir(parents=True)
    with tarfile.open(base, "w") as tar:
        info = tarfile.TarInfo("./etc/hostname")
        tar.addfile(info)
    seen: dict[str, list[str]] = {}

    class Capturing(RecordingEngine):
        def import_rootfs(self, tar_path: Path, tag: str, changes=()) -> str:
            with tarfile.open(tar_path) as tar:
                seen["members"] = tar.getnames()
                seen["mode"] = [oct(m.mode) for m in tar.getmembers() if m.name.endswith("gobgpd")]
            return super().import_rootfs(tar_path, tag, changes)

    engine = Capturing(set())
    tag = ensure_image(s, engine, lambda _: None)
    assert engine.imported == [(tag, ('CMD ["sleep", "infinity"]',))]
    assert seen["members"] == ["./etc/hostname", "./usr/local/bin/gobgpd"]
    assert seen["mode"] == ["0o755"]
    with tarfile.open(base) as tar:  # the cache itself is left as it was
        assert tar.getnames() == ["./etc/hostname"]


def fake_base(target: Path) -> None:
    """What a debootstrap minbase leaves that matters here."""
    for rel in ("etc/os-release", "usr/share/doc/base-files/copyright", "var/cache/apt/archives/dpkg_1.21.deb",
                "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages",
                "dev/null-ish"):
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_text(rel)


def fake_packages(root: Path, spec: ImageSpec) -> None:
    """What apt-get install of ``spec``'s packages adds to the root."""
    for pkg in spec.packages:
        for rel in (f"usr/lib/{pkg}/{pkg}.so", f"usr/share/doc/{pkg}/copyright",
                    f"var/cache/apt/archives/{pkg}_1.0.deb", "var/cache/apt/pkgcache.bin", "var/log/apt/term.log"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(rel)


class FakeBuild:
    """Fake debootstrap and apt steps that record what ran where."""

    def __init__(self, monkeypatch) -> None:
        self.bases: list[str] = []
        self.installs: list[tuple[str, bool]] = []  # (image, whether the root held the base's files)
        monkeypatch.setattr(images, "_run_debootstrap", self.debootstrap)
        monkeypatch.setattr(images, "_install_packages", self.install)
        monkeypatch.setattr(images, "ensure_prereqs", lambda need, log: None)

    def debootstrap(self, s: ImageSpec, target: Path, log, label: str = "") -> None:
        assert s.packages == ()  # the base is the suite's minbase, nothing of any image
        self.bases.append(s.suite)
        fake_base(target)

    def install(self, s: ImageSpec, root: Path, log) -> None:
        self.installs.append((s.name, (root / "etc" / "os-release").is_file()))
        fake_packages(root, s)


def tar_names(path: Path) -> set[str]:
    with tarfile.open(path) as tar:
        return set(tar.getnames())


def test_rootfs_is_built_on_the_suite_base_cleaned_and_cached(monkeypatch, tmp_path: Path) -> None:
    """One debootstrap per suite; each image's packages go on a copy of it; caches and docs are removed."""
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path / "cache"))
    build = FakeBuild(monkeypatch)
    gateway = ImageSpec(name="gateway", suite="bookworm", packages=("frr",))
    client = ImageSpec(name="client", suite="bookworm", packages=("curl",))
    out = images.ensure_rootfs(gateway, lambda _: None)
    names = tar_names(out)
    assert {"./etc/os-release", "./usr/lib/frr/frr.so", "./dev"} <= names
    assert not any("usr/share/doc/" in n and n != "./usr/share/doc" or n.endswith((".deb", ".bin", ".log"))
                   or "null-ish" in n or "lists/deb.debian.org" in n for n in names)
    base = images.base_cache_path("bookworm")
    base_names = tar_names(base)
    assert "./var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages" in base_names
    assert "./dev/null-ish" in base_names  # the base keeps /dev for apt in the chroot
    assert not any(n.endswith(".deb") for n in base_names)  # .debs live in the .deb cache
    assert images.ensure_rootfs(client, lambda _: None) != out
    assert images.ensure_rootfs(gateway, lambda _: None) == out  # cached
    assert build.bases == ["bookworm"] and build.installs == [("gateway", True), ("client", True)]
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(
        [out.name, base.name, images.rootfs_cache_path(client).name])  # no partial tarball
    assert list((tmp_path / "cache" / "work").iterdir()) == []  # no build folder left


def test_base_depends_on_the_suite_and_recipe_only(binary: Path, monkeypatch) -> None:
    key = images.base_key("bookworm")
    assert key != images.base_key("bullseye")
    assert images.base_cache_path("bookworm").name == f"bookworm-base-{key}.tar"
    assert images.rootfs_cache_path(spec(binary)).name != images.base_cache_path("bookworm").name
    monkeypatch.setattr(images, "RECIPE_VERSION", "999")
    assert images.base_key("bookworm") != key


def test_failed_build_leaves_no_cache_and_no_tag(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path / "cache"))

    def broken(s: ImageSpec, target: Path, log, label: str = "") -> None:
        (target / "etc").mkdir(parents=True)
        raise ImageError("debootstrap bookworm for image client failed (exit 1)")

    monkeypatch.setattr(images, "_run_debootstrap", broken)
    s = ImageSpec(name="client", suite="bookworm", packages=("curl",))
    engine = RecordingEngine(set())
    with pytest.raises(ImageError, match="failed"):
        ensure_image(s, engine, lambda _: None)
    assert engine.imported == []
    assert [p.name for p in images.rootfs_cache_path(s).parent.iterdir()] == []
    assert [p.name for p in (tmp_path / "cache" / "work").iterdir()] == []


def test_failed_packages_keep_the_base_but_no_rootfs(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path / "cache"))
    FakeBuild(monkeypatch)

    def broken(s: ImageSpec, root: Path, log) -> None:
        raise ImageError("apt-get install curl in the bookworm base for image client failed (exit 100)")

    monkeypatch.setattr(images, "_install_packages", broken)
    s = ImageSpec(name="client", suite="bookworm", packages=("curl",))
    with pytest.raises(ImageError, match="exit 100"):
        images.ensure_rootfs(s, lambda _: None)
    assert [p.name for p in images.rootfs_cache_path(s).parent.iterdir()] == [images.base_cache_path("bookworm").name]
    assert [p.name for p in (tmp_path / "cache" / "work").iterdir()] == []


def test_missing_images_are_built_in_parallel_on_one_base(monkeypatch, tmp_path: Path) -> None:
    """Three missing images: their package steps run at the same time (a barrier only three
    concurrent builds pass), the base is debootstrapped once, and present images are left alone."""
    import threading
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(images.JOBS_ENV, "3")
    build = FakeBuild(monkeypatch)
    together = threading.Barrier(3, timeout=20)

    def install(s: ImageSpec, root: Path, log) -> None:
        together.wait()  # raises BrokenBarrierError unless all three are in here at once
        build.install(s, root, log)

    monkeypatch.setattr(images, "_install_packages", install)
    specs = [ImageSpec(name=n, suite="bookworm", packages=(n + "-pkg",)) for n in ("gateway", "twin", "client")]
    present = ImageSpec(name="cilium", suite="bookworm", packages=("haproxy",))
    engine = RecordingEngine({image_tag(present)})
    lines: list[str] = []
    tags = images.ensure_images([*specs, present], engine, lines.append)
    assert list(tags) == ["gateway", "twin", "client", "cilium"]
    assert sorted(t for t, _ in engine.imported) == sorted(image_tag(s) for s in specs)
    assert build.bases == ["bookworm"] and sorted(build.installs) == [(n, True) for n in ("client", "gateway", "twin")]
    assert "images: building gateway, twin, client, 3 at a time, on the bookworm base" in lines
    assert f"image cilium: present ({image_tag(present)})" in lines


def test_one_failed_image_does_not_stop_the_others(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(images.JOBS_ENV, "2")
    build = FakeBuild(monkeypatch)

    def install(s: ImageSpec, root: Path, log) -> None:
        if s.name == "twin":
            raise ImageError("apt-get install haproxy in the bookworm base for image twin failed (exit 100)")
        build.install(s, root, log)

    monkeypatch.setattr(images, "_install_packages", install)
    specs = [ImageSpec(name=n, suite="bookworm", packages=(n + "-pkg",)) for n in ("gateway", "twin", "client")]
    engine = RecordingEngine(set())
    with pytest.raises(ImageError, match="image twin failed"):
        images.ensure_images(specs, engine, lambda _: None)
    assert sorted(t for t, _ in engine.imported) == sorted(image_tag(s) for s in specs if s.name != "twin")


def test_duplicate_names_are_refused_before_any_build(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path / "cache"))
    build = FakeBuild(monkeypatch)
    twice = [ImageSpec(name="twin", suite="bookworm", packages=("a",)),
             ImageSpec(name="twin", suite="bookworm", packages=("b",))]
    with pytest.raises(ImageError, match="two image specs are named 'twin'"):
        images.ensure_images(twice, RecordingEngine(set()), lambda _: None)
    assert build.bases == []


@pytest.mark.parametrize("env,missing,jobs", [("", 3, None), ("1", 3, 1), ("8", 3, 3), ("2", 1, 1)])
def test_build_jobs(monkeypatch, env: str, missing: int, jobs: int | None) -> None:
    monkeypatch.setenv(images.JOBS_ENV, env)
    want = jobs if jobs is not None else max(1, min(os.cpu_count() or 1, missing))
    assert images.build_jobs(missing) == want


@pytest.mark.parametrize("bad", ["0", "two", "-1"])
def test_bad_build_jobs_say_what_to_give(monkeypatch, bad: str) -> None:
    monkeypatch.setenv(images.JOBS_ENV, bad)
    with pytest.raises(ImageError, match="number of images to build at once"):
        images.build_jobs(3)


def test_a_held_lock_makes_the_second_builder_wait_then_go_on(monkeypatch, tmp_path: Path) -> None:
    import threading
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path / "cache"))
    waiting, got = threading.Event(), threading.Event()

    def second() -> None:
        with images._lock("rootfs-x", lambda m: waiting.set(), "image x"):
            got.set()

    with images._lock("rootfs-x"):
        t = threading.Thread(target=second)
        t.start()
        assert waiting.wait(10) and not got.is_set()  # it says it waits, and does
    t.join(10)
    assert got.is_set()


def test_stopping_ends_a_build_that_waits_for_a_lock(monkeypatch, tmp_path: Path) -> None:
    import threading
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path / "cache"))
    waiting = threading.Event()
    raised: list[BaseException] = []

    def second() -> None:
        try:
            with images._lock("rootfs-y", lambda m: waiting.set(), "image y"):
                pass
        except images.ImageBuildStopped as exc:
            raised.append(exc)

    try:
        with images._lock("rootfs-y"):
            t = threading.Thread(target=second)
            t.start()
            assert waiting.wait(10)
            images._BUILDS.stop_all()
            t.join(10)
    finally:
        images._BUILDS.stopping.clear()
    assert len(raised) == 1


def test_stopping_kills_a_running_tool(monkeypatch, tmp_path: Path) -> None:
    """stop_all (what an interrupt of a parallel build does) kills the tool's whole process group."""
    import threading
    import time
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path / "cache"))
    tool = tmp_path / "tool"
    tool.write_text('#!/bin/sh\necho "I: Retrieving x"\nsleep 30 &\nwait\n')
    tool.chmod(0o755)
    started = threading.Event()
    raised: list[BaseException] = []
    progress = images._Progress(lambda _: None, "image t", "base:bookworm")

    def run() -> None:
        try:
            images._run_step([str(tool)], progress, images._DEBOOTSTRAP_PHASES, 60, "tool",
                             on_line=lambda line: started.set())
        except images.ImageBuildStopped as exc:
            raised.append(exc)

    t0 = time.monotonic()
    t = threading.Thread(target=run)
    t.start()
    try:
        assert started.wait(10)
        images._BUILDS.stop_all()
        t.join(10)
    finally:
        images._BUILDS.stopping.clear()
    assert len(raised) == 1 and time.monotonic() - t0 < 10


def fake_chroot_on_path(monkeypatch, tmp_path: Path) -> Path:
    """A stand-in for `chroot ROOT env ... apt-get ARGS` that acts like apt on an out-of-date base:
    install fails with a 404 until `update` ran; it checks that no service may start meanwhile."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)
    calls = tmp_path / "apt-calls"
    script = bindir / "chroot"
    script.write_text(f"""#!/bin/sh
root="$1"; shift
case " $* " in *" update "*) echo update >> {calls}; echo "Get:1 http://deb.debian.org/debian bookworm InRelease"
    touch "$root/updated"; exit 0;; esac
echo install >> {calls}
[ -x "$root/usr/sbin/policy-rc.d" ] || {{ echo "no policy-rc.d"; exit 3; }}
if [ ! -e "$root/updated" ]; then
  echo "E: Failed to fetch http://deb.debian.org/debian/pool/main/f/frr/frr_8.4.4-1.1~deb12u1_amd64.deb  404  Not Found"
  exit 100
fi
echo "0 upgraded, 2 newly installed, 0 to remove and 0 not upgraded."
echo "Get:1 http://deb.debian.org/debian bookworm/main amd64 frr amd64 8.4.4-1.1~deb12u2 [1 kB]"
echo "Unpacking frr (8.4.4-1.1~deb12u2) ..."
echo "Setting up frr (8.4.4-1.1~deb12u2) ..."
mkdir -p "$root/var/cache/apt/archives" && echo deb > "$root/var/cache/apt/archives/frr_8.4.4_amd64.deb"
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return calls


def test_packages_step_updates_stale_lists_keeps_debs_and_removes_its_policy(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path / "cache"))
    calls = fake_chroot_on_path(monkeypatch, tmp_path)
    cached = images.debs_dir("bookworm") / "libc6_2.36_amd64.deb"
    cached.write_text("libc6")
    root = tmp_path / "root"
    (root / "usr" / "sbin").mkdir(parents=True)
    s = ImageSpec(name="gateway", suite="bookworm", packages=("frr", "tini"))
    lines: list[str] = []
    images._install_packages(s, root, lines.append)
    assert calls.read_text().split() == ["install", "update", "install"]
    assert any("out of date: apt-get update" in ln for ln in lines)
    assert any(re.search(r"configuring 1/2 \(\+\d+ s, about \d+ s left\)$", ln) for ln in lines), lines
    assert (images.debs_dir("bookworm") / "frr_8.4.4_amd64.deb").read_text() == "deb\n"  # kept for the next build
    assert (root / "var" / "cache" / "apt" / "archives" / "libc6_2.36_amd64.deb").read_text() == "libc6"  # offered
    assert not (root / images.POLICY_RC_D).exists()
    assert json.loads((tmp_path / "cache" / "image-timings.json").read_text())["packages:gateway"] >= 0


def test_packages_step_failure_says_which_image_and_suite(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path / "cache"))
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    (bindir / "chroot").write_text('#!/bin/sh\necho "E: Unable to locate package frrr"\nexit 100\n')
    (bindir / "chroot").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    root = tmp_path / "root"
    root.mkdir()
    s = ImageSpec(name="gateway", suite="bullseye", packages=("frrr",), note="FRR 7.5.1 lacks the N-bit")
    with pytest.raises(ImageError) as err:
        images._install_packages(s, root, lambda _: None)
    text = str(err.value)
    assert "bullseye base for image gateway failed (exit 100)" in text and "Unable to locate package frrr" in text
    assert "bullseye may no longer be reachable" in text and "N-bit" in text


def test_estimates_come_from_the_last_build_on_this_machine(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path / "cache"))
    assert images._expected_s("base:bookworm") == (images.FIRST_GUESS_S["base"], False)
    images._record_s("base:bookworm", 31.26)
    assert images._expected_s("base:bookworm") == (31.3, True)
    assert "as the last build here" in images._Progress(lambda _: None, "base bookworm", "base:bookworm").estimate()


def fake_debootstrap_on_path(monkeypatch, tmp_path: Path, body: str) -> None:
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    script = bindir / "debootstrap"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")


def test_debootstrap_progress_and_failure_are_reported(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path / "cache"))
    fake_debootstrap_on_path(monkeypatch, tmp_path, (
        'echo "I: Retrieving InRelease"\n'
        'echo "I: Retrieving frr 8.4.4"\n'
        'echo "I: Extracting frr..."\n'
        'echo "E: Couldn\'t download packages: frr"\n'
        "exit 1\n"))
    s = ImageSpec(name="gateway", suite="bullseye", packages=("frr",), note="use FRR >= 8.3")
    lines: list[str] = []
    with pytest.raises(ImageError) as err:
        images._run_debootstrap(s, tmp_path / "root", lines.append)
    text = str(err.value)
    assert "exit 1" in text and "Couldn't download packages: frr" in text
    assert "bullseye may no longer be reachable" in text and "use FRR >= 8.3" in text
    phases = [ln.split("   ", 1)[1].split(" (+")[0] for ln in lines if "(+" in ln]
    assert phases == ["downloading packages", "extracting"]


def test_debootstrap_that_hangs_is_stopped_at_the_deadline(monkeypatch, tmp_path: Path) -> None:
    import time
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(images, "DEBOOTSTRAP_TIMEOUT_S", 0.5)
    # the child keeps stdout open: only killing the whole process group ends the read loop
    fake_debootstrap_on_path(monkeypatch, tmp_path, 'echo "I: Retrieving x"\nsleep 30\n')
    s = ImageSpec(name="client", suite="bookworm", packages=("curl",))
    t0 = time.monotonic()
    with pytest.raises(ImageError, match="was stopped"):
        images._run_debootstrap(s, tmp_path / "root", lambda _: None)
    assert time.monotonic() - t0 < 10
