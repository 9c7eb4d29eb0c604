"""Image specs, content tags and the FRR version mapping (no Docker, no debootstrap)."""
from __future__ import annotations

import dataclasses
import os
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
    import tarfile
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


def test_rootfs_is_cleaned_tarred_and_cached(monkeypatch, tmp_path: Path) -> None:
    """The debootstrap result loses package caches and docs, keeps the system, and is cached."""
    import tarfile
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path / "cache"))
    runs: list[str] = []

    def fake_debootstrap(s: ImageSpec, target: Path, log) -> None:
        runs.append(s.name)
        for rel in ("etc/frr/vtysh.conf", "usr/share/doc/frr/copyright", "dev/null-ish",
                    "var/cache/apt/archives/frr_8.4.4.deb", "usr/lib/frr/frrinit.sh"):
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            (target / rel).write_text(rel)

    monkeypatch.setattr(images, "_run_debootstrap", fake_debootstrap)
    s = ImageSpec(name="gateway", suite="bookworm", packages=("frr",))
    out = images.ensure_rootfs(s, lambda _: None)
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
    assert {"./etc/frr/vtysh.conf", "./usr/lib/frr/frrinit.sh", "./dev"} <= names
    assert not any("usr/share/doc/frr" in n or n.endswith(".deb") or "null-ish" in n for n in names)
    assert images.ensure_rootfs(s, lambda _: None) == out and runs == ["gateway"]  # cached
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no partial tarball
    assert list((tmp_path / "cache" / "work").iterdir()) == []  # no build folder left


def test_failed_build_leaves_no_cache_and_no_tag(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("K3S_BGP_LAB_CACHE", str(tmp_path / "cache"))

    def broken(s: ImageSpec, target: Path, log) -> None:
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
