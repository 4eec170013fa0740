"""The cache root: its version, its areas, what show reports and what prune removes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from mpkit.cache import AREAS, CacheRoot
from mpkit.cache.prune import prune, summarize
from mpkit.cache.root import FORMAT, FORMAT_FILE
from mpkit.errors import CacheError
from mpkit.image.digest import sha256_digest
from tests.fixtures.tempholder import Holder

DAY = 86400.0
REF_NAME = "org.opencontainers.image.ref.name"


def blob(cache: CacheRoot, data: bytes) -> str:
    digest = sha256_digest(data)
    cache.write_bytes(cache.blobs / digest.partition(":")[2], data)
    return digest


def age(path: Path, days: float) -> None:
    then = time.time() - days * DAY
    os.utime(path, (then, then))


def filled(root: Path) -> CacheRoot:
    """A cache with something in every area: a base image, a dependency layer record, an
    unreferenced built layer, listings and entries of every kind."""
    cache = CacheRoot(root).open()
    layer, config = blob(cache, b"base layer"), blob(cache, b'{"rootfs": {}}')
    manifest = json.dumps({
        "schemaVersion": 2,
        "config": {"digest": config, "size": 14},
        "layers": [{"digest": layer, "size": 10}],
    }).encode()  # fmt: skip
    manifest_digest = blob(cache, manifest)
    index = {"schemaVersion": 2, "manifests": [
        {"digest": manifest_digest, "size": len(manifest),
         "annotations": {REF_NAME: "registry.example/base:1"}},
    ]}  # fmt: skip
    cache.write_bytes(cache.index_file, json.dumps(index).encode())
    cache.write_bytes(cache.path / "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
    pip = blob(cache, b"dependency layer")
    record = {"digest": pip, "size": 16, "diff_id": pip}
    cache.write_bytes(cache.layer_records / "pip-key.json", json.dumps(record).encode())
    copied = blob(cache, b"a COPY layer nothing records")
    cache.write_bytes(cache.diffids / ("d" * 64), copied.encode() + b"\n")
    for digest in (layer, copied):
        cache.write_bytes(cache.fsindex / f"{digest.partition(':')[2]}.json", b"{}")
    cache.write_bytes(cache.fsindex / "merged-abc.view", b"view")
    cache.write_bytes(cache.base_checks / "abc.json", b"{}")
    cache.write_bytes(cache.path / "describe" / "definition.json", b"{}")
    (cache.pydeps / ("e" * 64)).mkdir(parents=True)
    (cache.pydeps / ("e" * 64) / "complete").write_text("key")
    (cache.uv).mkdir()
    (cache.uv / "wheel").write_bytes(b"w")
    (cache.hostfs / "snapshot").mkdir(parents=True)
    cache.write_bytes(cache.describe_valid / ("f" * 64), b"valid\n")
    return cache


def names(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()}


def test_a_new_cache_records_its_format_and_an_older_layout_is_adopted(tmp_path: Path) -> None:
    fresh = CacheRoot(tmp_path / "new").open()
    assert fresh.format() == FORMAT
    assert json.loads((fresh.path / FORMAT_FILE).read_text()) == {"format": FORMAT}

    unversioned = tmp_path / "unversioned"  # written before the format was recorded
    (unversioned / "blobs" / "sha256").mkdir(parents=True)
    (unversioned / "blobs" / "sha256" / ("a" * 64)).write_bytes(b"kept")
    assert CacheRoot(unversioned).open().format() == FORMAT
    assert (unversioned / "blobs" / "sha256" / ("a" * 64)).read_bytes() == b"kept"


def test_an_older_format_is_emptied_and_a_newer_one_refused(tmp_path: Path) -> None:
    cache = filled(tmp_path / "cache")
    (cache.path / FORMAT_FILE).write_text(json.dumps({"format": FORMAT - 1}))
    (cache.path / "users-notes.txt").write_text("not mpkit's")
    cache.open()
    assert names(cache.path) == {FORMAT_FILE, "users-notes.txt", "tmp"}

    (cache.path / FORMAT_FILE).write_text(json.dumps({"format": FORMAT + 1}))
    with pytest.raises(CacheError, match="newer mpkit") as info:
        cache.open()
    assert info.value.hint is not None and "prune --all" in info.value.hint


def test_opening_removes_what_killed_runs_left_and_keeps_what_running_ones_write(
    tmp_path: Path,
    holders: list[Holder],
) -> None:
    cache = CacheRoot(tmp_path / "cache").open()
    running, killed = Holder(cache.tmp, "dir"), Holder(cache.tmp, "file")
    holders += [running, killed]
    killed.kill()
    cache.open()
    assert names(cache.tmp) == {running.path.name}


def test_show_accounts_for_every_area(tmp_path: Path) -> None:
    cache = filled(tmp_path / "cache")
    (cache.path / "users-notes.txt").write_text("not mpkit's")
    summary = summarize(cache)
    assert {area.name for area in summary.areas} | set(summary.others) == names(cache.path)
    assert summary.others == ["users-notes.txt"]
    assert {area.name for area in summary.areas} == {area.name for area in AREAS}
    assert summary.images == {"registry.example/base:1": next(iter(summary.images.values()))}
    assert (summary.blobs, summary.layer_records) == (5, 1)
    shown = summary.to_dict()
    assert shown["areas"]["uv"]["bytes"] == 1
    assert shown["total_bytes"] == sum(area["bytes"] for area in shown["areas"].values())


def test_prune_removes_what_nothing_refers_to(tmp_path: Path) -> None:
    cache = filled(tmp_path / "cache")
    blobs_before = names(cache.blobs)
    prune(cache)
    removed = blobs_before - names(cache.blobs)
    assert len(removed) == 1  # the COPY layer; the base and the recorded layer stay
    (copied,) = removed
    assert list(cache.diffids.iterdir()) == []  # its diff_id record went with it
    assert f"{copied}.json" not in names(cache.fsindex)  # and so did its listing
    assert len([n for n in names(cache.fsindex) if n.endswith(".json")]) == 1
    assert (cache.pydeps / ("e" * 64)).is_dir()  # in use recently: kept


def test_prune_older_than_forgets_what_was_not_used(tmp_path: Path) -> None:
    cache = filled(tmp_path / "cache")
    for path in (cache.layer_records / "pip-key.json", cache.pydeps / ("e" * 64),
                 cache.hostfs / "snapshot", cache.fsindex / "merged-abc.view",
                 cache.index_file):  # fmt: skip
        age(path, 10)
    prune(cache, older_than_days=5)
    assert list(cache.layer_records.iterdir()) == []
    assert list(cache.hostfs.iterdir()) == []
    assert list(cache.pydeps.iterdir()) == []
    assert summarize(cache).images == {}
    assert summarize(cache).blobs == 0  # nothing refers to any blob any more
    assert (cache.describe_valid / ("f" * 64)).exists()  # used recently


def test_prune_removes_leftovers_of_older_versions(tmp_path: Path) -> None:
    cache = filled(tmp_path / "cache")
    leftovers = [cache.pydeps / "tmp-abcd1234", cache.hostfs / ".0123abcd.xyz",
                 cache.blobs / ".tmp-layer-abcd", cache.fsindex / ".tmp-efgh"]  # fmt: skip
    for path in leftovers[:2]:
        path.mkdir()
    for path in leftovers[2:]:
        path.write_bytes(b"half")
    fresh = cache.blobs / ".tmp-just-now"  # an older mpkit may be writing it right now
    fresh.write_bytes(b"x")
    for path in leftovers:
        age(path, 1)
    prune(cache)
    assert not any(path.exists() for path in leftovers)
    assert fresh.exists()


def test_prune_all_leaves_nothing_of_mpkits_and_follows_no_link(
    tmp_path: Path,
    holders: list[Holder],
) -> None:
    cache = filled(tmp_path / "cache")
    shared_uv = tmp_path / "shared-uv"
    shared_uv.mkdir()
    (shared_uv / "wheel").write_bytes(b"w")
    for path in cache.uv.iterdir():
        path.unlink()
    cache.uv.rmdir()
    cache.uv.symlink_to(shared_uv, target_is_directory=True)
    for directory in (cache.tmp, cache.path):  # the root: a temp written beside its target
        killed = Holder(directory, "file")
        holders.append(killed)
        killed.kill()
    (cache.path / "users-notes.txt").write_text("not mpkit's")

    assert summarize(cache).to_dict()["areas"]["uv"]["link"] == str(shared_uv)
    freed = prune(cache, everything=True)
    assert freed > 0
    assert names(cache.path) == {"users-notes.txt"}
    assert (shared_uv / "wheel").read_bytes() == b"w"  # the link went, not what it points at
    assert summarize(cache).areas == []


def test_prune_all_keeps_a_temp_that_a_running_build_writes(
    tmp_path: Path,
    holders: list[Holder],
) -> None:
    cache = filled(tmp_path / "cache")
    running = Holder(cache.tmp, "file")
    holders.append(running)
    prune(cache, everything=True)
    assert names(cache.path) == {"tmp"}
    assert names(cache.tmp) == {running.path.name}
    running.kill()
    prune(cache, everything=True)
    assert names(cache.path) == set()
