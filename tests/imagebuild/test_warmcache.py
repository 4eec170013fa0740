"""What a warm rebuild reuses from disk instead of recomputing: the mapped entries of a
staged pip install, the detected Python target, uv's version, unchanged COPY layers and
the overlay's bookkeeping. Each cached answer must equal the computed one."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from mpkit.cache.root import CacheRoot, sharing
from mpkit.image import mediatypes
from mpkit.image.cache import LayerCache
from mpkit.image.layerwriter import LayerEntry
from mpkit.imagebuild import base, pydeps
from mpkit.imagebuild.copy import OverlayView
from mpkit.imagebuild.fsview import FileInfo, MemoryFilesystem
from mpkit.imagebuild.pydeps import DependencyLayer, uvrun
from mpkit.imagebuild.pydeps.mapcache import load_mapping, mapping_path, save_mapping
from mpkit.imagebuild.target import PythonTarget, detect_target
from mpkit.imagebuild.targetcache import detect_target_cached, from_plain, to_plain
from mpkit.reference import parse_reference
from mpkit.registry.locations import BlobLocations
from tests.imagebuild.test_pydeps import (
    BIN,
    SITE,
    base_with_demo_09,
    debian_base,
    install_offline,
)
from tests.imagebuild.test_target import alpine, bookworm, config, python_slim

UPGRADE = "pip3 install --no-index --upgrade demo-pkg"


class Unmapped(AssertionError):
    pass


def forbid_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise Unmapped("map_staging ran although its result was kept")

    monkeypatch.setattr(pydeps, "map_staging", refuse)


def same_layer(a: DependencyLayer, b: DependencyLayer) -> None:
    assert a.entries == b.entries
    assert (a.cache_key, a.installed, a.uninstalled, a.staging) == (
        b.cache_key, b.installed, b.uninstalled, b.staging,
    )  # fmt: skip


# -- the mapped entries of a staged install ---------------------------------------------------


def test_kept_mapping_equals_a_fresh_one_whiteouts_and_scripts_included(
    tmp_path: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context, cache = tmp_path / "context", tmp_path / "cache"
    context.mkdir()
    fs = base_with_demo_09(debian_base())

    def run(base_id: str | None) -> DependencyLayer:
        return install_offline(UPGRADE, fs, context=context, cache=cache,
                               wheelhouse=wheelhouse, base_id=base_id)  # fmt: skip

    fresh = run(None)
    assert any(e.kind == "whiteout" for e in fresh.entries)  # uninstalls are kept too
    assert any(e.data is not None for e in fresh.entries)  # scripts, RECORD, INSTALLER
    assert any(e.source is not None for e in fresh.entries)  # files from the staging tree
    assert not list(fresh.staging.glob("mapped-*") if fresh.staging else [])  # no base_id
    same_layer(run("base-1"), fresh)
    assert fresh.staging is not None and len(list(fresh.staging.glob("mapped-*"))) == 1

    forbid_mapping(monkeypatch)
    same_layer(run("base-1"), fresh)
    with pytest.raises(Unmapped):
        run("base-2")  # another base: mapped afresh


def test_a_damaged_mapping_is_ignored_and_rewritten(
    tmp_path: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context, cache = tmp_path / "context", tmp_path / "cache"
    context.mkdir()
    fs = base_with_demo_09(debian_base())
    first = install_offline(UPGRADE, fs, context=context, cache=cache, wheelhouse=wheelhouse,
                            base_id="b")  # fmt: skip
    assert first.staging is not None
    (kept,) = first.staging.glob("mapped-*")
    kept.write_bytes(kept.read_bytes()[:-3])
    again = install_offline(UPGRADE, fs, context=context, cache=cache, wheelhouse=wheelhouse,
                            base_id="b")  # fmt: skip
    same_layer(again, first)
    forbid_mapping(monkeypatch)
    same_layer(install_offline(UPGRADE, fs, context=context, cache=cache,
                               wheelhouse=wheelhouse, base_id="b"), first)  # fmt: skip


def test_mapping_file_round_trip(tmp_path: Path) -> None:
    tree = tmp_path / "staging" / "target"
    entries = [
        LayerEntry(f"{SITE}/pkg", "dir", 0o755, 1000, 1000),
        LayerEntry(f"{SITE}/pkg/a.py", "file", 0o644, 1000, 1000, source=tree / "pkg" / "a.py"),
        LayerEntry(f"{BIN}/tool", "file", 0o755, 1000, 1000, data=b"#!/usr/bin/python3\n"),
        LayerEntry(f"{SITE}/link", "symlink", 0o777, 1000, 1000, linkname="pkg"),
        LayerEntry(f"{SITE}/old", "whiteout"),
        LayerEntry("/elsewhere", "file", source=Path("/host/file")),
    ]
    target = detect_target(bookworm(), config("aria-ops-adapter-user"), launcher=("pip3",))
    path = mapping_path(tmp_path / "staging", target, "layers")
    save_mapping(path, tree, (entries, {"pkg": "1.0"}, {"old": "0.9"}))
    assert load_mapping(path, tree) == (entries, {"pkg": "1.0"}, {"old": "0.9"})
    moved = tmp_path / "moved" / "target"  # the cache directory moved: sources follow it
    loaded = load_mapping(path, moved)
    assert loaded is not None and loaded[0][1].source == moved / "pkg" / "a.py"
    assert loaded[0][5].source == Path("/host/file")
    other = detect_target(bookworm(), config(""), launcher=("pip3",))
    assert mapping_path(tmp_path, other, "layers") != mapping_path(tmp_path, target, "layers")
    assert mapping_path(tmp_path, target, "x") != mapping_path(tmp_path, target, "layers")


# -- the detected target ----------------------------------------------------------------------


class NoAccess(MemoryFilesystem):
    """A filesystem that must not be read."""

    def info(self, path: str) -> FileInfo | None:
        raise AssertionError(f"read {path} although the target was kept")

    def listdir(self, path: str) -> list[str]:
        raise AssertionError(f"read {path} although the target was kept")

    def read_file(self, path: str, limit: int = 1 << 20) -> bytes | None:
        raise AssertionError(f"read {path} although the target was kept")


@pytest.mark.parametrize(
    ("fs", "user", "launcher"),
    [
        (bookworm(), "aria-ops-adapter-user", ("pip3",)),
        (python_slim(), "", ()),
        (alpine(), "", ("python3", "-m", "pip")),
    ],
)
def test_kept_target_equals_the_detected_one(
    tmp_path: Path, fs: MemoryFilesystem, user: str, launcher: tuple[str, ...]
) -> None:
    detected = detect_target(fs, config(user), launcher=launcher)
    assert from_plain(to_plain(detected)) == detected
    assert repr(from_plain(to_plain(detected))) == repr(detected)  # mapping_path uses it

    def cached(view: MemoryFilesystem, fs_id: str = "id", **kwargs: object) -> PythonTarget:
        return detect_target_cached(view, config(user), fs_id=fs_id, cache=CacheRoot(tmp_path),
                                    launcher=launcher, **kwargs)  # type: ignore[arg-type]  # fmt: skip

    assert cached(fs) == detected
    assert cached(NoAccess()) == detected  # kept: the filesystem is not read again
    with pytest.raises(AssertionError, match="although the target was kept"):
        cached(NoAccess(), fs_id="another image")
    with pytest.raises(AssertionError, match="although the target was kept"):
        cached(NoAccess(), user_flag=True)  # other arguments, another answer


def test_a_damaged_target_file_is_ignored(tmp_path: Path) -> None:
    fs = bookworm()
    detected = detect_target_cached(fs, config(""), fs_id="id", cache=CacheRoot(tmp_path))
    (kept,) = (tmp_path / "fsindex").glob("target-*")
    kept.write_bytes(b"mpkit-target\n" + b"\x00" * 40)
    assert detect_target_cached(fs, config(""), fs_id="id", cache=CacheRoot(tmp_path)) == detected
    assert from_plain(("too", "short")) is None


# -- uv's version -----------------------------------------------------------------------------


def test_uvs_version_is_remembered_while_the_binary_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = uvrun.uv_binary()
    version = uvrun.remembered_uv_version(CacheRoot(tmp_path))
    assert version == uvrun.uv_version(binary)
    record_path = tmp_path / "pydeps" / "uv-version.json"
    assert record_path.is_file()  # this venv's uv is in its own scripts directory

    def refuse(*_args: object) -> str:
        raise AssertionError("ran uv although its version was remembered")

    monkeypatch.setattr(uvrun, "uv_version", refuse)
    monkeypatch.setattr(uvrun, "uv_binary", refuse)
    assert uvrun.remembered_uv_version(CacheRoot(tmp_path)) == version

    record = json.loads(record_path.read_text())
    record["stat"][1] -= 1  # the binary was replaced since
    record_path.write_text(json.dumps(record))
    monkeypatch.setattr(uvrun, "uv_binary", lambda: binary)
    monkeypatch.setattr(uvrun, "uv_version", lambda _binary=None: "9.9.9")
    assert uvrun.remembered_uv_version(CacheRoot(tmp_path)) == "9.9.9"
    assert json.loads(record_path.read_text())["version"] == "9.9.9"


# -- layers and the overlay -------------------------------------------------------------------


def test_an_unchanged_layer_is_not_written_again(tmp_path: Path) -> None:
    store = LayerCache(CacheRoot(tmp_path))
    entries = [LayerEntry("/app/a.py", "file", data=b"print(1)\n")]
    first = store.write_layer(entries, mediatypes.OCI_LAYER_GZIP, mtime=0)
    assert first.path is not None
    before = first.path.stat()
    again = store.write_layer(entries, mediatypes.OCI_LAYER_GZIP, mtime=0)
    assert (again.digest, again.size, again.diff_id, again.path) == (
        first.digest, first.size, first.diff_id, first.path,
    )  # fmt: skip
    after = first.path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not list(store.root.tmp.iterdir())  # the second temp file was dropped
    changed = store.write_layer([LayerEntry("/app/a.py", "file", data=b"print(2)\n")],
                          mediatypes.OCI_LAYER_GZIP, mtime=0)  # fmt: skip
    assert changed.digest != first.digest and changed.path is not None
    assert changed.path.is_file()


def test_overlay_replacing_a_directory_drops_what_was_planned_below_it() -> None:
    base = MemoryFilesystem()
    base.add("/srv/base-dir", FileInfo("dir", 0o755))
    base.add_file("/srv/base-dir/kept.txt", b"x")
    view = OverlayView(base)
    view.extend([
        LayerEntry("/app", "dir", 0o755),
        LayerEntry("/app/pkg", "dir", 0o755),
        LayerEntry("/app/pkg/mod.py", "file", data=b""),
        LayerEntry("/app/other.py", "file", data=b""),
    ])  # fmt: skip
    view.add(LayerEntry("/app/pkg", "file", data=b"now a file"))
    assert sorted(view.entries) == ["/app", "/app/other.py", "/app/pkg"]
    assert view.listdir("/app") == ["other.py", "pkg"]
    view.add(LayerEntry("/srv/base-dir", "symlink", 0o777, linkname="/app"))  # a base dir
    assert view.info("/srv/base-dir/kept.txt") is None
    view.add(LayerEntry("/app", "file", data=b""))  # the whole planned tree goes
    assert sorted(view.entries) == ["/app", "/srv/base-dir"]


# -- where the base's blobs are ---------------------------------------------------------------


def test_base_locations_are_written_only_when_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[list[str]] = []

    class Counting(BlobLocations):
        def record(self, registry: str, repository: str, digests: Iterable[str]) -> None:
            writes.append(list(digests))
            super().record(registry, repository, writes[-1])

    locations = Counting(tmp_path / "locations.db")
    monkeypatch.setattr(base, "blob_locations", lambda: locations)
    source = parse_reference("mirror.example:5000/sdk/base:1")
    digests = ["sha256:" + "a" * 64, "sha256:" + "b" * 64]
    base._remember_location(source, digests)
    base._remember_location(source, digests)  # a rebuild: already known, no database write
    assert writes == [digests]
    base._remember_location(source, [*digests, "sha256:" + "c" * 64])  # a new layer
    assert len(writes) == 2
    elsewhere = parse_reference("mirror.example:5000/other/base:1")
    base._remember_location(elsewhere, digests)
    assert len(writes) == 3
    assert set(locations.candidates(source.registry, digests[0], exclude="")) == {
        "sdk/base", "other/base",
    }  # fmt: skip


class JsonRecords:
    """Shared records as a registry holds them: JSON text, written by another machine."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def fetch_record(self, name: str) -> dict[str, Any] | None:
        text = self.texts.get(name)
        return json.loads(text) if text is not None else None

    def remember_record(self, name: str, record: dict[str, Any]) -> None:
        self.texts[name] = json.dumps(record)


def test_a_target_shared_through_the_registry_equals_the_detected_one(tmp_path: Path) -> None:
    records = JsonRecords()
    with sharing(records):
        detected = detect_target_cached(bookworm(), config(""), fs_id="id",
                                        cache=CacheRoot(tmp_path / "one"))  # fmt: skip
        # Another machine: nothing kept locally, the filesystem is not read.
        shared = detect_target_cached(NoAccess(), config(""), fs_id="id",
                                      cache=CacheRoot(tmp_path / "two"))  # fmt: skip
    assert shared == detected and repr(shared) == repr(detected)

    [name] = records.texts
    records.texts[name] = json.dumps({"target": ["not", "a", "target"]})  # a poisoned record
    with sharing(records):
        assert detect_target_cached(bookworm(), config(""), fs_id="id",
                                    cache=CacheRoot(tmp_path / "three")) == detected  # fmt: skip
